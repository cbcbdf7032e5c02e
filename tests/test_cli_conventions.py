"""The conventions people expect of a command line: -h, --version, bare help, Ctrl-C."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from lowlight_cli import __version__


def test_bare_command_prints_help_and_exits_0(cli):
    code, out, _ = cli()
    assert code == 0 and "Usage" in out and "enhance" in out


def test_short_help_and_version(cli):
    code, out, _ = cli("-h")
    assert code == 0 and "Usage" in out
    code, out, _ = cli("enhance", "-h")
    assert code == 0 and "--strength" in out
    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"lowlight {__version__}"


def test_ctrl_c_says_interrupted_exits_130_and_leaves_no_file(tmp_path):
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.full((32, 32, 3), 20, np.uint8))
    # The interrupt arrives in the middle of the job, after the output's temporary file could exist.
    script = (
        "import os, signal, time, sys\n"
        "from lowlight_cli import batch, cli\n"
        "def slow(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(5)\n"
        "batch.run_job = slow\n"
        f"sys.argv = ['lowlight', 'enhance', {str(src)!r}, '-o', {str(tmp_path / 'out.png')!r}, '--model', 'gamma']\n"
        "cli.main()\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 130, run.stderr
    assert "Interrupted." in run.stderr and "Traceback" not in run.stderr
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["in.png"]


def test_log_lines_off_a_terminal_are_whole(capsys):
    import logging

    from lowlight_cli.cli import _LineHandler

    message = "a warning long enough to be wrapped at 80 columns by rich's log table " * 3
    _LineHandler().handle(logging.LogRecord("lowlight", logging.WARNING, __file__, 1, message.strip(), None, None))
    assert capsys.readouterr().err == f"WARNING: {message.strip()}\n"


def test_time_left_is_known_after_the_first_slow_step():
    # One tile a minute: rich's TimeRemainingColumn, which needs two steps within 30 s, said -:--:--.
    from rich.progress import Progress

    from lowlight_cli.cli import TimeLeftColumn

    now = [0.0]
    bar = Progress(get_time=lambda: now[0])
    task = bar.add_task("tiles", total=4)
    assert str(TimeLeftColumn().render(bar.tasks[task])) == "0:00:00 elapsed, -:--:-- left"
    now[0] = 60.0
    bar.update(task, completed=1)
    assert str(TimeLeftColumn().render(bar.tasks[task])) == "0:01:00 elapsed, 0:03:00 left"


def test_max_pixels_default_is_the_librarys():
    import inspect

    from lowlight_cli import cli
    from lowlight_cli.images import DEFAULT_MAX_PIXELS

    for command in (cli.enhance, cli.compare, cli.eval_models):
        assert inspect.signature(command).parameters["max_pixels"].default == DEFAULT_MAX_PIXELS


def test_shell_completion_can_be_shown_installed_and_completes(cli, monkeypatch):
    # As the `lowlight` script, not `python -m pytest`: click names the program after __main__'s package.
    monkeypatch.setattr(sys.modules["__main__"], "__package__", None)
    # As a bash user sees it: typer finds the shell from the process tree, which a detached run has not.
    monkeypatch.setattr("typer.completion._get_shell_name", lambda: "bash")
    code, out, _ = cli("-h")
    assert code == 0 and "--install-completion" in out and "--show-completion" in out
    code, out, _ = cli("--show-completion", "bash")
    assert code == 0 and "_LOWLIGHT_COMPLETE=complete_bash" in out and "complete " in out
    monkeypatch.setenv("_LOWLIGHT_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "lowlight enhance --max")
    monkeypatch.setenv("COMP_CWORD", "2")
    code, out, _ = cli()
    assert code == 0 and out.split() == ["--max-pixels"]


def test_default_threads_leave_out_the_cores_other_processes_keep_busy(monkeypatch):
    """--threads 0 (the default): this process's cores less the busy ones, read from /proc/stat."""
    from lowlight_cli import inference

    stat = "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 90 0 10 0 0 0 0 0 5 0\ncpu1 5 0 5 88 2 0 0 0 0 0\nintr 1 2\n"
    assert inference.cpu_times(stat) == {0: (100, 0), 1: (100, 90)}
    threads = torch.get_num_threads()
    try:
        monkeypatch.setattr(inference.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
        for busy, expected in ((None, 4), (0.3, 4), (1.2, 3), (3.9, 1)):
            monkeypatch.setattr(inference, "busy_cores", lambda busy=busy: busy)
            inference.set_threads(0)
            assert torch.get_num_threads() == expected
        inference.set_threads(2)  # asked for: as asked, whatever is busy
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
