"""What a user sees: engine output (child processes included) in the log file, arcsub's
lines on the terminal, everything put back afterwards."""

import logging
import os
import subprocess
import sys

from arcsub.console import engine_output_to, progress_bar, say, vllm_bar


def test_engine_output_goes_to_the_log_file_and_arcsub_lines_to_the_terminal(tmp_path, capfd):
    log = tmp_path / "logs" / "run.log"
    child = "import sys; print('child stdout'); print('child stderr', file=sys.stderr)"
    with engine_output_to(log) as path:
        assert path == log
        subprocess.run([sys.executable, "-c", child], check=True)  # as vLLM's spawned engine would
        os.write(1, b"parent fd 1\n")
        os.write(2, b"parent fd 2\n")
        logging.getLogger("arcsub.test").info("an arcsub line")
        logging.getLogger("arcsub.test").debug("a debug line")
        say("a said line")
    os.write(1, b"after\n")
    out, err = capfd.readouterr()
    text = log.read_text()
    for line in ("child stdout", "child stderr", "parent fd 1", "parent fd 2", "an arcsub line", "a debug line"):
        assert line in text
    assert "an arcsub line" in err and "a said line" in err
    assert not any(line in out + err for line in ("child", "parent fd", "a debug line"))
    assert out == "after\n"  # the descriptors are back


def test_bars_draw_only_on_a_terminal_and_only_when_enabled(fake_terminal):
    with progress_bar(total=2, desc="stage-off", unit="x", enabled=False) as bar:
        bar.update(2)
    assert vllm_bar("stage-off", enabled=False) is False
    assert "stage-off" not in fake_terminal.getvalue()
    with progress_bar(total=2, desc="stage-on", unit="x") as bar:
        bar.update(2)
    make = vllm_bar("vllm-stage", enabled=True)  # called the two ways vLLM 0.32's generate calls it:
    assert list(make(["p1", "p2"], desc="Rendering prompts")) == ["p1", "p2"]  # passed through, not drawn
    with make(total=1, desc="Processed prompts", dynamic_ncols=True) as bar:
        bar.update(1)
        # vLLM reads format_dict["elapsed"]: a real, drawn bar has it (a disabled one does not)
        assert not bar.disable and bar.n == 1 and isinstance(bar.format_dict["elapsed"], float)
    drawn = fake_terminal.getvalue()
    assert "stage-on" in drawn and drawn.count("vllm-stage") >= 1
    assert "Processed prompts" not in drawn and "Rendering prompts" not in drawn
