"""Helpers for the tests that run the command line in-process."""

from __future__ import annotations

from pathlib import Path

from grassmann_cls.cli import main


def run(argv, capsys) -> tuple[int, str, str]:
    """``main(argv)`` in-process; argparse's exits count as return codes. Returns ``(code, stdout, stderr)``."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes (to check that nothing was overwritten)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
