import pytest

from arcsub.config import Config, FinetuneConfig, KernelConfig, PromptConfig, load_config, save_config
from arcsub.errors import ConfigError


def test_defaults_round_trip(tmp_path):
    config = Config()
    config.prompt.codec = "arc24"
    config.prompt.max_seq_len = 4096
    config.augment.keep_background = False
    path = save_config(config, tmp_path / "config.toml")
    assert load_config(path) == config
    assert load_config(None) == Config()


@pytest.mark.parametrize(
    "text, message",
    [
        ("[prompt]\ncodex = 'minimal'\n", "unknown key.*codex"),
        ("[prompt]\nmax_seq_len = '8k'\n", "prompt.max_seq_len = '8k': expected int"),
        ("[prompt]\nmax_seq_len = true\n", "expected int"),
        ("[prompt]\ndrop_order = 'middle'\n", "drop_order"),
        ("[nonsense]\n", "unknown key.*nonsense"),
        ("[prompt\n", "not valid TOML"),
        ("[inference]\nmin_p = 1.0\n", r"inference.min_p = 1.0; use a value in \[0, 1\)"),
        ("[inference]\nanswer_bound = 'grid'\n", "inference.answer_bound = 'grid'; use one of train, window"),
        ("[kernel]\ninfer_share = 0\n", r"kernel.infer_share = 0.0; use a share in \(0, 1\]"),
        ("[kernel]\nmax_steps = -1\n", r"kernel.max_steps = -1; use 0 \(no test-time fine-tuning\) or more"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_the_kernels_step_ceiling_is_its_own_switch():
    """kernel.max_steps = 0: no test-time fine-tuning in the kernel; finetune.steps is
    arcsub run's count and does not reach the kernel."""
    assert not KernelConfig(max_steps=0).fine_tunes
    assert Config(finetune=FinetuneConfig(steps=0)).kernel.fine_tunes
    with pytest.raises(ConfigError, match="kernel.min_steps = 0"):
        KernelConfig(min_steps=0)


def test_validation_in_code():
    with pytest.raises(ConfigError, match="at least 16"):
        PromptConfig(max_seq_len=3)


def test_augment_seed_is_gone(tmp_path):
    """It was read by nothing (inference plans use inference.seed, training draws
    finetune.seed) yet blocked a resume when changed."""
    path = tmp_path / "c.toml"
    path.write_text("[augment]\nseed = 1\n")
    with pytest.raises(ConfigError, match=r"augment: unknown key\(s\) seed; known: keep_background"):
        load_config(path)
