"""User-facing errors.

Anything a user can cause (a bad file, a missing model, a wrong option) raises an
``ArcsubError`` subclass whose message names the thing and the fix. The CLI prints
it on one line and exits 2; bugs still raise normally with a traceback.

A message names a setting the caller gave by its name in the library, in backticks
(```workers` = 0: pass at least 1``); the CLI shows it as the flag that sets it
(``cli.common.user_message``: ``--workers 0: pass at least 1``), so the library knows
nothing of flags.
"""


class ArcsubError(Exception):
    """Base class for errors a user can fix."""


class TaskFormatError(ArcsubError):
    """A challenge, solution or task file does not hold valid ARC data."""


class DatasetNotFoundError(ArcsubError):
    """A task source (path or dataset name) cannot be found."""


class SubmissionError(ArcsubError):
    """A submission file is malformed or does not match its challenges."""


class ModelNotFoundError(ArcsubError):
    """A model path or name cannot be resolved to a model directory."""


class ConfigError(ArcsubError):
    """A config file or option has an invalid value."""


class PromptError(ArcsubError):
    """A prompt cannot be built (e.g. it does not fit the token budget, or the
    tokenizer's chat template breaks the prompt/answer boundary)."""


class FinetuneError(ArcsubError):
    """Fine-tuning cannot run as asked (no trainable weights, a checkpoint that does
    not match, an output folder that holds another run)."""


class ModelPreparationError(ArcsubError):
    """A model cannot be prepared as asked: no RoPE to extend, a target window shorter
    than today's, an existing destination, an architecture that needs remote code, ..."""


class ChatTemplateError(ModelPreparationError):
    """A chat template fails verification: a marker that is not one token, a generation
    prompt that does not end where the answer starts, answer tokens that differ in context."""
