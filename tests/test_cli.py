import subprocess
import sys

from segtrt.cli import SUBCOMMANDS, main


def test_every_subcommand_has_help(capsys):
    for name in SUBCOMMANDS:
        try:
            main([name, "--help"])
        except SystemExit as stop:
            assert stop.code == 0
        assert "usage: segtrt " + name in capsys.readouterr().out


def test_cli_start_up_does_not_import_torch():
    code = "import sys; from segtrt.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
