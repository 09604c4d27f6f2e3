"""The iodfz command line."""

from __future__ import annotations

import json
import os
import pty
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from iodfz import api, cli
from iodfz.errors import IodfError

SRC = Path(__file__).resolve().parents[1] / "src"
runner = CliRunner()


def invoke(*args: str | os.PathLike[str], input: bytes | None = None):  # type: ignore[no-untyped-def]
    """Run the CLI in-process (fast); for behaviour that needs a real process use run_iodfz."""
    return runner.invoke(cli.app, [str(a) for a in args], input=input)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample.txt"
    path.write_bytes(b"".join(b"line %d of the sample\n" % i for i in range(5000)))
    os.chmod(path, 0o640)
    os.utime(path, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    return path


def test_pipeline_through_shell(run_iodfz, sample: Path) -> None:  # type: ignore[no-untyped-def]
    py = f"{sys.executable} -m iodfz"
    script = f"cat {sample} | {py} compress -c | {py} decompress -c | cmp - {sample}"
    env = dict(os.environ, PYTHONPATH=str(SRC))
    done = subprocess.run(["bash", "-o", "pipefail", "-c", script], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""


def test_compress_decompress_keeps_metadata(sample: Path, tmp_path: Path) -> None:
    original = sample.read_bytes()
    result = invoke("compress", sample)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    packed = tmp_path / "sample.txt.iodf"
    assert sample.exists()  # inputs are kept by default
    assert packed.stat().st_mtime_ns == sample.stat().st_mtime_ns
    assert packed.stat().st_mode & 0o777 == 0o640
    sample.unlink()
    result = invoke("decompress", packed)
    assert result.exit_code == 0, result.output
    assert sample.read_bytes() == original
    assert sample.stat().st_mtime_ns == 1_500_000_000_987_654_321
    assert sample.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("kind", ["text", "image"])
def test_no_name_stores_no_metadata_yet_restores_it(
    kind: str, sample: Path, tmp_path: Path
) -> None:
    """-n (gzip's flag): no name, mode or mtime in the container; decompressing in place
    takes them from the .iodf file, as zstd does."""
    if kind == "image":
        noise = random.Random(0)  # a smooth ramp with noise: zstd cannot beat the flow on it
        pixels = bytes(i // 96 * 4 + i % 96 + noise.randrange(8) for i in range(32 * 32 * 3))
        sample.write_bytes(b"P6\n32 32\n255\n" + pixels)
        os.utime(sample, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    original = sample.read_bytes()
    plain, bare = tmp_path / "plain.iodf", tmp_path / "sample.txt.iodf"
    assert invoke("compress", "-o", plain, sample).exit_code == 0
    assert invoke("compress", "-n", sample).exit_code == 0
    assert plain.stat().st_size - bare.stat().st_size >= len("sample.txt") + 8
    (row,) = json.loads(invoke("info", "--json", bare).stdout)
    assert row["codec"] == ("neural-image" if kind == "image" else "zstd")
    assert row["name"] is None and row["mode"] is None and row["mtime_ns"] is None
    assert bare.stat().st_mtime_ns == 1_500_000_000_987_654_321
    sample.unlink()
    assert invoke("decompress", bare).exit_code == 0
    assert sample.read_bytes() == original
    assert sample.stat().st_mtime_ns == 1_500_000_000_987_654_321
    assert sample.stat().st_mode & 0o777 == 0o640


def test_refuses_to_overwrite_unless_forced(sample: Path, tmp_path: Path) -> None:
    packed = tmp_path / "sample.txt.iodf"
    packed.write_bytes(b"precious")
    result = invoke("compress", sample)
    assert result.exit_code == 1
    assert "already exists" in result.stderr and "Traceback" not in result.output
    assert packed.read_bytes() == b"precious"
    assert invoke("compress", "-f", sample).exit_code == 0
    with open(packed, "rb") as f:
        assert api.info(f).original_size == sample.stat().st_size
    out = tmp_path / "out.txt"
    out.write_bytes(b"keep me")
    assert invoke("decompress", "-o", out, packed).exit_code == 1
    assert out.read_bytes() == b"keep me"
    assert invoke("decompress", "-f", "-o", out, packed).exit_code == 0
    assert out.read_bytes() == sample.read_bytes()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_rm_removes_input_only_after_verification(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = sample.read_bytes()
    packed = tmp_path / "sample.txt.iodf"

    def broken_test(src):  # type: ignore[no-untyped-def]
        raise IodfError("checksum mismatch: decoded data differs from the original")

    monkeypatch.setattr(api, "test", broken_test)
    result = invoke("compress", "--rm", sample)
    assert result.exit_code == 1 and "checksum mismatch" in result.stderr
    assert sample.read_bytes() == original and not packed.exists()
    monkeypatch.undo()

    assert invoke("compress", "--rm", sample).exit_code == 0
    assert not sample.exists() and packed.exists()
    assert invoke("decompress", "--rm", packed).exit_code == 0
    assert sample.read_bytes() == original and not packed.exists()


def test_rm_and_keep_conflict(sample: Path) -> None:
    result = invoke("compress", "--rm", "-k", sample)
    assert result.exit_code == cli.USAGE_EXIT and sample.exists()


def test_decompress_requires_suffix_unless_output_named(sample: Path, tmp_path: Path) -> None:
    packed = tmp_path / "packed.bin"
    assert invoke("compress", "-o", packed, sample).exit_code == 0
    result = invoke("decompress", packed)
    assert result.exit_code == 1 and "unknown suffix" in result.stderr
    assert invoke("decompress", "-o", tmp_path / "x", packed).exit_code == 0
    result = invoke("decompress", "-c", packed)
    assert result.exit_code == 0 and result.stdout_bytes == sample.read_bytes()


def test_compressing_iodf_file_is_skipped_with_note(sample: Path, tmp_path: Path) -> None:
    assert invoke("compress", sample).exit_code == 0
    packed = tmp_path / "sample.txt.iodf"
    result = invoke("compress", packed)
    assert result.exit_code == 0 and "skipped" in result.stderr
    assert not (tmp_path / "sample.txt.iodf.iodf").exists()
    assert invoke("compress", "-q", packed).stderr == ""
    assert invoke("compress", "-f", packed).exit_code == 0
    assert (tmp_path / "sample.txt.iodf.iodf").exists()


def test_batch_goes_on_after_errors(sample: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(1000))
    result = invoke("compress", tmp_path / "missing", sample, tmp_path, other)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert set(lines) == {
        f"iodfz: {tmp_path}: is a directory (use -r)",
        f"iodfz: {tmp_path / 'missing'}: No such file or directory",
    }
    assert (tmp_path / "sample.txt.iodf").exists() and (tmp_path / "other.bin.iodf").exists()


def _tree(root: Path) -> dict[str, bytes]:
    rng = random.Random(7)
    files = {
        "a.txt": b"alpha\n" * 1000,
        "sub/b.bin": bytes(rng.getrandbits(8) for _ in range(5000)),
        "sub/deeper/c.txt": b"",
        "sub/deeper/d.dat": b"d" * 70_000,
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


@pytest.mark.parametrize("threads", ["1", "2"])
def test_recursive_with_output_dir(tmp_path: Path, threads: str) -> None:
    src = tmp_path / "tree"
    files = _tree(src)
    (src / "link").symlink_to(src / "a.txt")
    (src / "dirlink").symlink_to(src / "sub")
    packed = tmp_path / "packed"
    result = invoke("compress", "-r", "-T", threads, "--output-dir", packed, src)
    assert result.exit_code == 0, result.output
    assert f"{src / 'link'}: symbolic link -- skipped" in result.stderr
    assert f"{src / 'dirlink'}: symbolic link -- skipped" in result.stderr
    got = sorted(str(p.relative_to(packed)) for p in packed.rglob("*") if p.is_file())
    assert got == sorted(f"tree/{rel}.iodf" for rel in files)
    out = tmp_path / "out"
    result = invoke("decompress", "-r", "-T", threads, "--output-dir", out, packed)
    assert result.exit_code == 0, result.output
    for rel, data in files.items():
        assert (out / "packed" / "tree" / rel).read_bytes() == data
    assert invoke("test", "-r", packed).exit_code == 0


def test_recursive_in_place_with_rm(tmp_path: Path) -> None:
    files = _tree(tmp_path)
    assert invoke("compress", "-r", "--rm", tmp_path).exit_code == 0
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        Path(rel).name + ".iodf" for rel in files
    )
    result = invoke("decompress", "-r", "--rm", tmp_path)
    assert result.exit_code == 0, result.output
    for rel, data in files.items():
        assert (tmp_path / rel).read_bytes() == data
    assert not list(tmp_path.rglob("*.iodf"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_an_error_others_go_on(tmp_path: Path) -> None:
    _tree(tmp_path)
    secret = tmp_path / "sub" / "secret"
    secret.write_bytes(b"x")
    secret.chmod(0)
    try:
        result = invoke("compress", "-r", tmp_path)
    finally:
        secret.chmod(0o600)
    assert result.exit_code == 1
    assert f"iodfz: {secret}: Permission denied" in result.stderr
    assert (tmp_path / "sub" / "b.bin.iodf").exists()


def test_unreadable_input_via_fifo_like_error(tmp_path: Path) -> None:
    """Root-proof variant of the above: a directory entry that cannot be read as a file."""
    _tree(tmp_path)
    (tmp_path / "sub" / "fifo").unlink(missing_ok=True)
    os.mkfifo(tmp_path / "sub" / "fifo")
    result = invoke("compress", "-r", "--rm", tmp_path)
    assert result.exit_code == 0
    assert "fifo: not a regular file -- skipped" in result.stderr
    bad = tmp_path / "sub" / "bad.iodf"
    bad.write_bytes(b"IODF garbage")
    result = invoke("decompress", "-r", tmp_path)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if "skipped" not in line]
    assert len(errors) == 1
    assert errors[0].startswith(f"iodfz: {bad}: unsupported format version 32 (this iodfz reads")
    assert (tmp_path / "sub" / "deeper" / "d.dat.iodf").exists()


def test_info_and_test(sample: Path, tmp_path: Path) -> None:
    assert invoke("compress", sample).exit_code == 0
    packed = tmp_path / "sample.txt.iodf"
    result = invoke("info", "--json", packed)
    assert result.exit_code == 0
    (row,) = json.loads(result.stdout)
    assert row["codec"] == "zstd" and row["name"] == "sample.txt" and row["mode"] == "0640"
    assert row["original_size"] == sample.stat().st_size
    assert row["compressed_size"] == packed.stat().st_size
    assert row["ratio"] > 3
    result = invoke("info", packed)
    assert result.exit_code == 0 and "zstd" in result.stdout and "sample.txt.iodf" in result.stdout
    assert invoke("list", "-v", packed).exit_code == 0
    result = invoke("test", "-v", packed)
    assert result.exit_code == 0 and "OK" in result.stderr
    packed.write_bytes(packed.read_bytes()[:-1])
    assert invoke("test", packed).exit_code == 1
    result = invoke("info", "--json", packed)
    assert result.exit_code == 1 and "truncated" in json.loads(result.stdout)[0]["error"]


def test_stdin_to_file_and_back(sample: Path, tmp_path: Path) -> None:
    packed = tmp_path / "x.iodf"
    assert invoke("compress", "-o", packed, input=sample.read_bytes()).exit_code == 0
    result = invoke("decompress", "-c", packed)
    assert result.stdout_bytes == sample.read_bytes()
    result = invoke("decompress", input=packed.read_bytes())
    assert result.exit_code == 0 and result.stdout_bytes == sample.read_bytes()


@pytest.mark.parametrize(
    "args",
    [
        ["compress", "-o", "{tmp}/o", "{sample}", "{tmp}/b"],
        ["compress", "-c", "{sample}", "{tmp}/b"],
        ["compress", "--level", "20", "{sample}"],
        ["compress", "-T", "x", "{sample}"],
        ["compress", "-T", "-3", "{sample}"],
        ["compress", "--bogus", "{sample}"],
        ["decompress", "-c", "-o", "{tmp}/o", "{sample}"],
        ["frobnicate", "{sample}"],
        ["-d", "-t", "{sample}"],
        ["info", "--level", "3", "{sample}"],
    ],
)
def test_usage_errors_are_one_line_and_one_status(
    sample: Path, tmp_path: Path, args: list[str]
) -> None:
    (tmp_path / "b").write_bytes(b"b")
    result = invoke(*(a.format(tmp=tmp_path, sample=sample) for a in args))
    assert result.exit_code == cli.USAGE_EXIT, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("iodfz: ") and "Traceback" not in line
    assert not list(tmp_path.glob("*.iodf")) and not (tmp_path / "o").exists()


def test_same_file_and_version(sample: Path) -> None:
    assert invoke("compress", "-o", sample, sample).exit_code == 1  # a failed file, not usage
    assert invoke("--version").stdout.startswith("iodfz ")


def test_refuses_to_write_compressed_data_to_terminal(run_iodfz, sample: Path) -> None:  # type: ignore[no-untyped-def]
    controller, terminal = pty.openpty()
    try:
        done = run_iodfz("compress", "-c", sample, stdout=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert done.returncode == 1
    assert b"terminal" in done.stderr


def test_corruption_at_cli_level(run_iodfz, sample: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert invoke("compress", sample).exit_code == 0
    blob = (tmp_path / "sample.txt.iodf").read_bytes()
    rng = random.Random(3)
    positions = [0, 4, 5, 12, len(blob) // 2, len(blob) - 40, len(blob) - 1]
    positions += rng.sample(range(len(blob)), 3)
    damaged_dir = tmp_path / "damaged"
    damaged_dir.mkdir()
    paths = []
    for i, pos in enumerate(positions):
        damaged = bytearray(blob)
        damaged[pos] ^= 0x20
        path = damaged_dir / f"flip{i}.iodf"
        path.write_bytes(bytes(damaged))
        paths.append(path)
    for i, cut in enumerate([0, 3, 17, len(blob) // 2, len(blob) - 1]):
        path = damaged_dir / f"cut{i}.iodf"
        path.write_bytes(blob[:cut])
        paths.append(path)
    done = run_iodfz("decompress", *paths)
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == len(paths) and "Traceback" not in done.stderr.decode()
    assert all(line.startswith("iodfz: ") for line in lines)
    assert sorted(p.name for p in damaged_dir.iterdir()) == sorted(p.name for p in paths)
    done = run_iodfz("decompress", "-c", paths[4])
    assert done.returncode == 1 and b"Traceback" not in done.stderr
    done = run_iodfz("test", "--debug", paths[4])
    assert done.returncode == 1 and b"Traceback" in done.stderr


def test_decompress_to_stdout_broken_pipe_is_quiet(run_iodfz, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    big = tmp_path / "big"
    big.write_bytes(os.urandom(1 << 20) * 4)
    assert invoke("compress", big).exit_code == 0
    env = dict(os.environ, PYTHONPATH=str(SRC))
    cmd = f"{sys.executable} -m iodfz decompress -c {big}.iodf | head -c 10 >/dev/null"
    done = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True)
    assert b"Traceback" not in done.stderr and b"Error" not in done.stderr


def test_python_m_and_script_agree(run_iodfz) -> None:  # type: ignore[no-untyped-def]
    done = run_iodfz("--help")
    assert done.returncode == 0 and b"compress" in done.stdout
    script = shutil.which("iodfz", path=str(Path(sys.executable).parent))
    if script:
        assert subprocess.run([script, "--version"], capture_output=True).returncode == 0


@pytest.mark.parametrize(
    ("args", "status"), [(["--version"], 0), (["decompress", "missing.iodf"], 1), (["bogus"], 2)]
)
def test_main_leaves_with_the_commands_status_and_runs_exit_handlers(
    tmp_path: Path, args: list[str], status: int
) -> None:
    """main() ends the process without tearing the interpreter down (cli._leave): the exit
    status is the command's, what it printed is flushed, and exit handlers still run (the
    benchmarks' peak-RSS wrapper is one)."""
    code = (
        "import atexit, sys; from iodfz import cli\n"
        "atexit.register(lambda: print('handler ran', file=sys.stderr))\n"
        f"sys.argv = ['iodfz', *{args!r}]\n"
        "cli.main()\n"
        "print('not reached')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(SRC))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == status, done.stderr
    assert "handler ran" in done.stderr and "not reached" not in done.stdout
    assert "Traceback" not in done.stderr
    if status == 0:
        assert done.stdout.startswith("iodfz ")


@pytest.mark.parametrize("preset", [None, "10"])
def test_idle_blas_threads_sleep_unless_the_user_says(preset: str | None) -> None:
    """The command sets OpenBLAS's idle spin to its least before numpy loads (its spin is
    wasted CPU), and leaves a user's own setting alone."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop(cli.BLAS_SPIN_ENV, None)
    if preset is not None:
        env[cli.BLAS_SPIN_ENV] = preset
    code = (
        "import os, sys; from iodfz import cli; cli._blas_threads_sleep_when_idle(); "
        f"print('numpy' in sys.modules, os.environ.get({cli.BLAS_SPIN_ENV!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.split() == ["False", preset or "4"]


@pytest.mark.parametrize("user_setting", [None, "MALLOC_ARENA_MAX", "GLIBC_TUNABLES"])
def test_malloc_keeps_freed_memory_unless_the_user_tunes_it(
    monkeypatch: pytest.MonkeyPatch, user_setting: str | None
) -> None:
    """The command asks glibc to keep and reuse what it frees (mmap threshold, trim threshold
    and top pad raised), and leaves malloc alone where the user tunes it."""
    import ctypes

    calls: list[tuple[int, int]] = []

    class Libc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    monkeypatch.setattr(sys, "platform", "linux")
    for name in [n for n in os.environ if n.startswith("MALLOC_") or n == "GLIBC_TUNABLES"]:
        monkeypatch.delenv(name)
    if user_setting is not None:
        monkeypatch.setenv(user_setting, "2")
    cli._malloc_keeps_freed_memory()
    if user_setting is None:
        assert calls == [(-3, 32 << 20), (-1, 1 << 30), (-2, 64 << 20)]
    else:
        assert calls == []


def test_the_plain_command_lines_parse_as_the_typer_app_declares_them() -> None:
    """cli._run_plain runs compress, decompress and test without typer: its option table must
    be what the app declares for them (names, flag or value, and the value's type)."""
    from iodfz.cli_app import app as typer_app

    group = typer.main.get_command(typer_app)
    for name in ("compress", "decompress", "test"):
        command = group.commands[name]
        accepted = set(cli._FLAGS) | set(cli._VALUES)
        for param in command.params:
            if param.name == "files":
                continue
            for opt in param.opts:
                assert opt in accepted, (name, opt)
                if param.is_flag:
                    assert cli._FLAGS[opt] == param.name, (name, opt)
                else:
                    assert cli._VALUES[opt][0] == param.name, (name, opt)
        flags = [p.opts[0] for p in command.params if getattr(p, "is_flag", False)]
        plain = cli._plain_command([name, *flags])
        assert plain is not None and plain[0] is getattr(cli, command.callback.__name__)
        assert plain[1] == {"files": None, **{cli._FLAGS[flag]: True for flag in flags}}


@pytest.mark.parametrize(
    "argv",
    [
        ["-qf", "a"],
        ["-T2", "a"],
        ["--", "a"],
        ["-h"],
        ["compress", "--help"],
        ["info", "a"],
        ["-l", "a"],
        ["compress", "-q", "-q", "a"],
        ["compress", "--level", "x", "a"],
        ["compress", "-T", "-1", "a"],
        ["compress", "-o"],
        ["decompress", "--level", "3", "a"],
        ["-d", "-t", "a"],
        ["compress", "--quiet=1", "a"],
        ["compress", "-T=2", "a"],
        ["compress", "--level=", "a"],
        ["compress", "--level=x", "a"],
        ["compress", "--level=3", "--level", "3", "a"],
    ],
)
def test_anything_but_a_plain_command_line_is_left_to_typer(argv: list[str]) -> None:
    assert cli._plain_command(argv) is None


def test_long_options_take_their_value_joined_too() -> None:
    joined = cli._plain_command(["compress", "--level=5", "--threads=0", "--output=b", "a"])
    apart = cli._plain_command(["compress", "--level", "5", "--threads", "0", "-o", "b", "a"])
    assert joined is not None and joined == apart
    assert cli._plain_command(["--level=5", "a"]) == cli._plain_command(["compress", "-5", "a"])


def test_a_plain_command_line_gives_what_typer_gives() -> None:
    command, kwargs = cli._plain_command(["-5", "-q", "-T", "0", "a", "-o", "b", "-", "-k"])
    assert command is cli.compress
    assert kwargs == {
        "files": ["a", "-"],
        "level": 5,
        "quiet": True,
        "threads": 0,
        "output": Path("b"),
        "keep": True,
    }
