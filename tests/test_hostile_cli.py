"""The command line under hostile input, interruptions and shared trees (issues 10 and 13):
no litter, no traceback, bounded memory, one-line messages that name the right file."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import re
import resource
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from iodfz import api, cli, zoo
from iodfz.bench import run_cli_peak_rss
from iodfz.codec import predictive
from iodfz.codecs import FLOW_FROM, Options
from iodfz.container import (
    CODEC_ZSTD,
    SECTION_MODEL_ID,
    SECTION_SHAPE,
    ContainerWriter,
    Header,
    frame_digest,
)
from iodfz.zstd_path import compressor

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = dict(os.environ, PYTHONPATH=str(SRC))
runner = CliRunner()


def invoke(*args: str | os.PathLike[str], input: bytes | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(cli.app, [str(a) for a in args], input=input)


def spawn(*args: str | os.PathLike[str], **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "iodfz", *map(str, args)],
        env=ENV,
        stdout=kwargs.pop("stdout", subprocess.PIPE),
        stderr=subprocess.PIPE,
        **kwargs,  # type: ignore[arg-type]
    )


def photo(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    """Smooth shapes plus a little noise: what the flow codes better than zstd."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    planes = [120 + 60 * np.sin(y / (9 + 3 * c)) * np.cos(x / 13) for c in range(3)]
    pixels = np.stack(planes, axis=2) + rng.normal(0, 2, (h, w, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def ppm(pixels: np.ndarray) -> bytes:
    h, w, _ = pixels.shape
    return b"P6\n%d %d\n255\n" % (w, h) + pixels.tobytes()


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_unreproducible(pixels: np.ndarray) -> bytes:
    """An RGB PNG whose IDAT has a full flush half way: no single zlib call gives it back."""
    h, w, _ = pixels.shape
    raw = b"".join(b"\0" + pixels[y].tobytes() for y in range(h))
    z = zlib.compressobj(6)
    idat = z.compress(raw[: len(raw) // 2]) + z.flush(zlib.Z_FULL_FLUSH)
    idat += z.compress(raw[len(raw) // 2 :]) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    sig = b"\x89PNG\r\n\x1a\n"
    return sig + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if api.is_temp_name(p.name))


# --------------------------------------------------------------------------- models


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model folder that is the only one searched (in this process)."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setattr(zoo, "model_dirs", lambda: [folder])
    zoo.cards.cache_clear()
    zoo.load_by_id.cache_clear()
    monkeypatch.setattr(zoo, "_WARNED", set())
    yield folder
    zoo.cards.cache_clear()
    zoo.load_by_id.cache_clear()


def test_no_model_is_said_once_on_the_first_image(models: Path, tmp_path: Path) -> None:
    for i in range(2):
        (tmp_path / f"p{i}.ppm").write_bytes(ppm(photo(seed=i)))
    flow = f"--level={FLOW_FROM}"  # small images also through a flow
    result = invoke("compress", flow, tmp_path / "p0.ppm", tmp_path / "p1.ppm")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "no model installed" in warnings[0], result.stderr
    row = json.loads(invoke("info", "--json", tmp_path / "p0.ppm.iodf").stdout)[0]
    # no shipped tables either: version 2, which can do without them
    assert (row["codec"], row["model_name"]) == ("neural-image", predictive.V2.name)


def test_stale_model_card_falls_back_to_the_predictive_coder(models: Path, tmp_path: Path) -> None:
    shipped = sorted((SRC.parent / "models").glob("*.iodfm"))
    if not shipped:
        pytest.skip("no shipped model")
    card = json.loads(shipped[0].with_suffix(".json").read_text())
    (models / shipped[0].name).write_bytes(shipped[0].read_bytes())
    card["model_id"] = "0" * 64  # the card of an older export of this model
    card["levels"] = [1, 19]
    (models / shipped[0].with_suffix(".json").name).write_text(json.dumps(card))
    (tmp_path / "p.ppm").write_bytes(ppm(photo()))
    result = invoke("compress", f"--level={FLOW_FROM}", tmp_path / "p.ppm")
    assert result.exit_code == 0, result.output
    assert "internal error" not in result.stderr
    assert "warning" in result.stderr and "does not match" in result.stderr
    row = json.loads(invoke("info", "--json", tmp_path / "p.ppm.iodf").stdout)[0]
    # no shipped tables either: version 2, which can do without them
    assert (row["codec"], row["model_name"]) == ("neural-image", predictive.V2.name)


# --------------------------------------------------------------------------- telling the truth


@pytest.fixture(params=["predictive", "flow"])
def image_iodf(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A photo compressed by the CLI (in this process) with the predictive coder or a flow."""
    if not zoo.cards():
        pytest.skip("no shipped model")
    if request.param == "flow":
        request.getfixturevalue("flow_only")
    src = tmp_path / "photo.ppm"
    src.write_bytes(ppm(photo()))
    result = invoke("compress", "-v", src)
    assert result.exit_code == 0, result.output
    return tmp_path / "photo.ppm.iodf"


def test_verbose_names_codec_model_and_backend(image_iodf: Path) -> None:
    from iodfz.engine.backends import backend_for

    with open(image_iodf, "rb") as f:
        model_id = api.info(f).to_dict()["model_id"]
    card = api.model_card(model_id)
    assert card is not None
    model_id = card["model_id"]
    if predictive.coders_for(model_id):
        backend = "numpy (no network)"
    else:
        backend = backend_for(zoo.load_by_id(model_id)).name
    model_id = model_id[:16]
    for command in ("test", "decompress -c"):
        result = invoke(*command.split(), "-v", image_iodf)
        assert result.exit_code == 0
        line = result.stderr.strip().splitlines()[-1]
        assert f"neural-image, model {card['name']} ({model_id}), backend {backend}" in line
    result = invoke("compress", "-v", "-f", image_iodf.with_suffix(""))
    assert f"model {card['name']} ({model_id}), backend {backend}" in result.stderr


def test_info_shows_model_name_and_id_within_80_columns(image_iodf: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_bytes(b"plain text\n" * 500)
    assert invoke("compress", text).exit_code == 0
    with open(image_iodf, "rb") as f:
        row = api.info(f).to_dict()
    card = api.model_card(row["model_id"])
    assert card is not None and row["model_name"] == card["name"]
    model_id = card["model_id"][:8]
    env = dict(ENV, COLUMNS="80", TERM="xterm")
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "iodfz", "info", image_iodf, f"{text}.iodf"],
            env=env,
            stdout=terminal,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        os.close(terminal)
        out = b""
        while True:
            try:
                data = os.read(controller, 65536)
            except OSError:
                break
            if not data:
                break
            out += data
    finally:
        os.close(controller)
    assert done.returncode == 0, done.stderr
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out.decode()).replace("\r", "")
    lines = [line.rstrip() for line in plain.splitlines() if line]
    assert all(len(line) <= 80 for line in lines), lines
    header = lines[0]
    assert header.split() == ["Codec", "Size", "Ratio", "Model", "Exact", "File"]
    start = header.index("Model")
    text_out = "\n".join(lines)
    assert row["model_name"] in text_out and model_id in text_out
    for line in lines[1:]:  # every cell starts under its column's title
        cell = line[start:].split(" ")[0]
        assert cell in (row["model_name"], model_id, "-", ""), lines


@pytest.mark.parametrize("command", ["decompress", "test", "info", "compress"])
def test_terminal_on_stdin_is_refused(command: str) -> None:
    controller, terminal = pty.openpty()
    try:
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "iodfz", command],
            env=ENV,
            stdin=terminal,
            capture_output=True,
            timeout=5,
        )
        assert time.monotonic() - start < 5
    finally:
        os.close(terminal)
        os.close(controller)
    assert done.returncode == 1
    assert done.stderr.decode().strip() == (
        "iodfz: stdin: refusing to read data from a terminal (use -f, or redirect)"
    )


def test_gzip_style_short_forms(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"short forms\n" * 1000)
    assert invoke("-9", src).exit_code == 0
    with open(f"{src}.iodf", "rb") as f:
        assert api.info(f).compressed_size < 200
    assert invoke("compress", "-f", "-19", src).exit_code == 0
    assert invoke("-t", f"{src}.iodf").exit_code == 0
    assert "zstd" in invoke("-l", f"{src}.iodf").stdout
    result = invoke("-d", "-c", f"{src}.iodf")
    assert result.exit_code == 0 and result.stdout_bytes == src.read_bytes()
    assert invoke("-c", src).stdout_bytes.startswith(b"IODF")
    for command in ("compress", "decompress", "test", "info", "selftest", "bench"):
        help_text = invoke(command, "--help").stdout
        assert help_text.startswith(f"Usage: iodfz {command}"), help_text
        for tag in ("TEXT", "INTEGER", "PATH", "BOOLEAN", "<", "x>=", "[default"):
            assert tag not in help_text, (command, tag)


def _append_to(found: list) -> Callable[[int, object], None]:
    return lambda index, value: found.append((index, value) if isinstance(value, int) else value)


def test_progress_moves_within_a_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    jobs = []
    for i in range(2):
        path = tmp_path / f"big{i}.bin"
        path.write_bytes(rng.integers(0, 4, 13 << 20, dtype=np.uint8).tobytes())
        jobs.append(cli.Job("compress", str(path), f"{path}.iodf", Options(threads=1)))
    for workers in (1, 2):
        seen: list[tuple[int, int]] = []
        outcomes: list[cli.Outcome] = []
        cli.execute(jobs, workers, _append_to(seen), _append_to(outcomes))
        assert [o.error for o in outcomes] == [None, None]
        for index in (0, 1):
            steps = [n for i, n in seen if i == index]
            assert steps[-1] == 13 << 20 and len([n for n in steps if n < 13 << 20]) >= 2, steps
        for job in jobs:
            os.unlink(job.dst)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- litter


def _wait_for(predicate, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_mid_compress_leaves_no_temp_file(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "out.iodf"
    proc = spawn("compress", "-o", out, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(os.urandom(1 << 20))
    proc.stdin.flush()
    _wait_for(lambda: litter(tmp_path))
    proc.send_signal(sig)
    # stdin stays open: the signal must win over the end of the input. On a loaded machine a
    # signal that lands while the process is blocked reading the pipe may take effect only when
    # that read returns, so the input is ended after a while — the output must still not appear.
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    assert proc.returncode == 128 + sig if sig != signal.SIGINT else 130, stderr
    assert b"Traceback" not in stderr
    assert litter(tmp_path) == [] and not out.exists()


def test_sigterm_stops_parallel_workers_without_litter(tmp_path: Path) -> None:
    fifos = [tmp_path / f"fifo{i}" for i in range(2)]
    for fifo in fifos:
        os.mkfifo(fifo)
    proc = spawn("compress", "-f", "-T", "2", *fifos, "--output-dir", tmp_path / "out")
    writers = [open(fifo, "wb") for fifo in fifos]  # noqa: SIM115
    try:
        for w in writers:
            w.write(os.urandom(1 << 16))
            w.flush()
        _wait_for(lambda: len(litter(tmp_path)) == 2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        for w in writers:
            with contextlib.suppress(BrokenPipeError):
                w.close()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert b"Traceback" not in stderr
    assert litter(tmp_path) == []


class _Stop(BaseException):
    pass


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_signal_as_the_temporary_file_appears_leaves_no_litter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """The CLI's handlers unwind by raising (or clean up by name and leave): a SIGHUP handled
    just before or just after the temporary file is created leaves nothing behind."""
    real_open = os.open

    def open_with_signal(name: str, flags: int, mode: int = 0o777) -> int:
        if when == "before":
            os.kill(os.getpid(), signal.SIGHUP)
        fd = real_open(name, flags, mode)
        if when == "after":
            os.kill(os.getpid(), signal.SIGHUP)
        return fd

    def unwind(signum: int, frame: object) -> None:
        raise _Stop

    old = signal.signal(signal.SIGHUP, unwind)
    monkeypatch.setattr(api.os, "open", open_with_signal)
    try:
        with pytest.raises(_Stop), api.atomic_output(tmp_path / "a.iodf", force=False) as out:
            out.write(b"never")
    finally:
        monkeypatch.undo()
        signal.signal(signal.SIGHUP, old)
    assert list(tmp_path.iterdir()) == []
    assert not api._LIVE_TEMPORARIES


def test_recursive_skips_temp_files_and_iodf_outputs(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_bytes(b"a" * 1000)
    (tree / "old.iodf").write_bytes(b"whatever")
    with api.atomic_output(tree / "b.txt.iodf", force=False) as out:  # another run, mid-write
        out.write(b"partial")
        result = invoke("compress", "-r", "-f", tree)
        assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tree.iterdir())
    assert names == ["a.txt", "a.txt.iodf", "b.txt.iodf", "old.iodf"], names


def test_long_names_compress_and_messages_name_the_real_file(tmp_path: Path) -> None:
    for length in (237, 240, 250):
        src = tmp_path / ("n" * (length - 4) + ".txt")
        src.write_bytes(b"long name\n" * 100)
        result = invoke("compress", src)
        assert result.exit_code == 0, result.output
        src.unlink()
        result = invoke("decompress", f"{src}.iodf")
        assert result.exit_code == 0, result.output
        assert src.read_bytes() == b"long name\n" * 100
    assert litter(tmp_path) == []
    missing = tmp_path / "no" / "such" / "dir" / "out.iodf"
    result = invoke("compress", "-o", missing, src)
    assert result.exit_code == 1
    assert f"{missing}: No such file or directory" in result.stderr
    assert cli.api.TEMP_SUFFIX not in result.stderr


def test_fifos_are_refused_unless_forced_and_never_removed(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    start = time.monotonic()
    for command in ("compress", "decompress"):
        result = invoke(command, fifo)
        assert result.exit_code == 1 and "not a regular file" in result.stderr
    assert time.monotonic() - start < 5

    def feed() -> None:
        with open(fifo, "wb") as w:
            w.write(b"through a fifo\n" * 100)

    writer = threading.Thread(target=feed)
    writer.start()
    result = invoke("compress", "-f", "--rm", fifo)
    writer.join()
    assert result.exit_code == 0, result.output
    assert fifo.exists() and "kept (not a regular file)" in result.stderr
    result = invoke("decompress", "-c", f"{fifo}.iodf")
    assert result.stdout_bytes == b"through a fifo\n" * 100


# --------------------------------------------------------------------------- bounded memory


def _feed_stdin(args: list[str], head: bytes, total: int) -> float:
    """Peak RSS (MiB) of ``iodfz ARGS`` reading ``head`` then zeros, ``total`` bytes, from a
    pipe."""
    read, write = os.pipe()

    def pump() -> None:
        with open(write, "wb") as w:
            w.write(head)
            block = bytes(1 << 20)
            left = total - len(head)
            while left > 0:
                w.write(block[:left])
                left -= len(block)

    thread = threading.Thread(target=pump)
    thread.start()
    try:
        return run_cli_peak_rss(args, stdin=read, env=ENV)[0]
    finally:
        os.close(read)
        thread.join()


@pytest.mark.parametrize(
    "head",
    [
        b"BM" + bytes(40),
        b"P5 100 100 255\n",
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)),
        b"II*\x00" + bytes(8),
    ],
    ids=["bmp", "pgm", "png", "tiff"],
)
def test_stream_that_starts_like_an_image_in_bounded_memory(tmp_path: Path, head: bytes) -> None:
    peak = _feed_stdin(["compress", "-c", "-T", "1"], head, 600 << 20)
    # a TIFF header does not say its size: a stream reads at most MAX_UNSIZED_IMAGE whole
    limit = 350 if head.startswith(b"II") else 200
    assert peak < limit, peak


def test_zstd_decoding_memory_does_not_grow_with_threads(tmp_path: Path) -> None:
    frame = 64 << 20
    packed = compressor(1).compress(bytes(frame))
    digest = frame_digest(bytes(frame))
    path = tmp_path / "frames.iodf"
    with open(path, "wb") as f:
        writer = ContainerWriter(f, Header(CODEC_ZSTD))
        for _ in range(12):
            writer.write_frame(CODEC_ZSTD, frame, digest, packed)
        writer.finish()
    script = (
        "import sys; from iodfz import api\n"
        "api.test(open(sys.argv[1], 'rb'), threads=int(sys.argv[2]))\n"
        # VmHWM, not ru_maxrss: Linux carries a forking parent's high-water mark into ru_maxrss
        "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])\n"
    )
    peaks = []
    for threads in (1, 12):
        done = subprocess.run(
            [sys.executable, "-c", script, str(path), str(threads)],
            env=ENV,
            capture_output=True,
            check=True,
        )
        peaks.append(int(done.stdout) / 1024)
    assert peaks[1] < 500, peaks


# --------------------------------------------------------------------------- item 8


def test_rm_pixels_keeps_a_png_that_does_not_come_back_identical(tmp_path: Path) -> None:
    if not zoo.cards():
        pytest.skip("no shipped model")
    src = tmp_path / "camera.png"
    original = png_unreproducible(photo(96, 128))
    src.write_bytes(original)
    result = invoke("compress", "--rm", "--pixels", src)
    assert result.exit_code == 0, result.output
    with open(f"{src}.iodf", "rb") as f:
        assert "pixel-exact" in api.info(f).to_dict()["guarantee"]
    assert src.read_bytes() == original
    assert "kept" in result.stderr


def test_failed_output_dir_fails_that_job_only(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "b").mkdir()
    (tree / "a" / "x.txt").write_bytes(b"x" * 100)
    (tree / "b" / "y.txt").write_bytes(b"y" * 100)
    out = tmp_path / "out"
    (out / "tree").mkdir(parents=True)
    (out / "tree" / "a").write_bytes(b"a file where a directory should go")
    result = invoke("compress", "-r", tree, "--output-dir", out)
    assert result.exit_code == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and str(tree / "a" / "x.txt") in errors[0], errors
    assert (out / "tree" / "b" / "y.txt.iodf").exists()


def test_output_from_stdin_gets_the_stored_mode(tmp_path: Path) -> None:
    src = tmp_path / "s.txt"
    src.write_bytes(b"mode\n" * 100)
    src.chmod(0o640)
    assert invoke("compress", src).exit_code == 0
    out = tmp_path / "restored"
    result = invoke("decompress", "-o", out, input=(tmp_path / "s.txt.iodf").read_bytes())
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o640
    packed = tmp_path / "from-stdin.iodf"
    old = os.umask(0o022)
    try:
        assert invoke("compress", "-o", packed, input=b"data").exit_code == 0
    finally:
        os.umask(old)
    assert packed.stat().st_mode & 0o777 == 0o644


def test_disk_full_names_the_output(tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(4 << 20))

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    done = subprocess.run(
        [sys.executable, "-m", "iodfz", "compress", str(src)],
        env=ENV,
        capture_output=True,
        preexec_fn=small_files,
    )
    assert done.returncode == 1
    (line,) = done.stderr.decode().splitlines()
    assert line == f"iodfz: {src}: {src}.iodf: File too large", line
    assert litter(tmp_path) == [] and not Path(f"{src}.iodf").exists()
    assert src.stat().st_size == 4 << 20


def test_names_with_newlines_and_bad_bytes_stay_on_one_line(tmp_path: Path) -> None:
    folder = os.fsencode(tmp_path)
    names = [b"two\nlines.txt", b"latin1-\xe9t\xe9.txt"]
    args = [os.fsdecode(folder + b"/" + name) for name in names]
    result = subprocess.run(
        [sys.executable, "-m", "iodfz", "decompress", *args], env=ENV, capture_output=True
    )
    lines = result.stderr.decode("utf-8").splitlines()
    assert len(lines) == 2, lines
    assert (
        lines[0].endswith("two\\nlines.txt: No such file or directory") or "two\\nlines" in lines[0]
    )
    assert "latin1-\\xe9t\\xe9.txt" in lines[1], lines
    assert "\\udc" not in result.stderr.decode()


# --------------------------------------------------------------------------- info


def _container_with_section(path: Path, type_id: int, value: bytes) -> None:
    header = Header(CODEC_ZSTD)
    header.sections.add(type_id, value)
    with open(path, "wb") as f:
        writer = ContainerWriter(f, header)
        data = b"payload"
        writer.write_frame(0, len(data), frame_digest(data), data)
        writer.finish()


def test_info_on_malformed_sections_and_mixed_files(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_bytes(b"good\n" * 100)
    assert invoke("compress", good).exit_code == 0
    odd = [tmp_path / "shape.iodf", tmp_path / "model.iodf"]
    _container_with_section(odd[0], SECTION_SHAPE, b"\x01")
    _container_with_section(odd[1], SECTION_MODEL_ID, bytes(65))
    bad = tmp_path / "bad.iodf"
    bad.write_bytes(b"IODF not really")
    for path in odd:
        assert invoke("test", path).exit_code == 0
    files = [bad, *odd, f"{good}.iodf"]
    result = invoke("info", *files)
    assert "Traceback" not in result.output
    assert result.exit_code == 1
    assert result.stderr.count("iodfz: ") == 1 and str(bad) in result.stderr
    for path in files[1:]:
        assert Path(path).name in result.stdout
    rows = json.loads(invoke("info", "--json", *files).stdout)
    assert [("error" in row) for row in rows] == [True, False, False, False]
    assert rows[1]["malformed"] == ["shape"]
    done = subprocess.run(
        [sys.executable, "-m", "iodfz", "info", "-v", *map(str, files)],
        env=ENV,
        capture_output=True,
    )
    assert b"Traceback" not in done.stderr and done.returncode == 1


def test_api_stream_compress_holds_no_second_copy() -> None:
    """A stream that starts like an image but is not one goes to zstd once the header's bound
    is passed; the output is still exact."""
    data = b"P5 64 64 255\n" + os.urandom(3 << 20)
    packed = io.BytesIO()
    api.compress(io.BytesIO(data), packed, Options(threads=1))
    out = io.BytesIO()
    api.decompress(io.BytesIO(packed.getvalue()), out)
    assert out.getvalue() == data
    assert re.fullmatch(r"\.x+\.", api.temp_name("x" * 10))
    assert len(os.fsencode(api.temp_name("y" * 250))) + 8 + len(api.TEMP_SUFFIX) < 250
