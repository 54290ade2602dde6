"""Output pipes that grow when a program fills them (``server/pipes.py``), on real pipes."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from djsupervisor.server import pipes
from djsupervisor.server.pipes import DEFAULT_SIZE, GROWN_SIZE, OutputPipes

pytestmark = pytest.mark.skipif(pipes.F_SETPIPE_SZ is None, reason="pipes cannot grow here")
MIB = 1024 * 1024


def capacity(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
def make_pipe() -> Iterator[Callable[[], tuple[int, int]]]:
    """Make pipes as supervisord does for a program: the read end non-blocking."""
    made: list[int] = []

    def make() -> tuple[int, int]:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        made.extend((read_end, write_end))
        return read_end, write_end

    yield make
    for fd in made:
        with contextlib.suppress(OSError):  # the test may have closed it
            os.close(fd)


def fill(write_end: int, size: int) -> None:
    data = memoryview(b"x" * size)
    while data:
        data = data[os.write(write_end, data) :]


def test_a_full_pipe_grows_and_is_then_read_whole(make_pipe: Callable[[], tuple[int, int]]) -> None:
    read_end, write_end = make_pipe()
    assert capacity(read_end) == DEFAULT_SIZE
    output = OutputPipes()
    fill(write_end, DEFAULT_SIZE)  # the program waits for us
    assert len(output.read(read_end)) == DEFAULT_SIZE
    assert capacity(read_end) == GROWN_SIZE
    # The program now writes a megabyte without waiting, and it is read in one go: at
    # its exit supervisord reads once more, then closes the pipe.
    os.set_blocking(write_end, False)
    fill(write_end, GROWN_SIZE)
    assert len(output.read(read_end)) == GROWN_SIZE
    assert output.read(read_end) == b""  # empty, not the end: EAGAIN
    os.close(write_end)
    assert output.read(read_end) == b""  # the end


def test_a_pipe_that_never_fills_keeps_its_size(make_pipe: Callable[[], tuple[int, int]]) -> None:
    read_end, write_end = make_pipe()
    output = OutputPipes()
    for size in (1, 80, DEFAULT_SIZE - 1):
        fill(write_end, size)
        assert len(output.read(read_end)) == size
    assert capacity(read_end) == DEFAULT_SIZE
    assert output.sizes == {}


def test_grown_pipes_stay_within_the_budget(make_pipe: Callable[[], tuple[int, int]]) -> None:
    output = OutputPipes(total=2 * MIB)
    ends = [make_pipe() for _ in range(3)]
    for read_end, write_end in ends:
        fill(write_end, DEFAULT_SIZE)
        output.read(read_end)
    assert [capacity(read_end) for read_end, _ in ends] == [MIB, MIB, DEFAULT_SIZE]
    # The first program exits: supervisord closes its pipe, and the budget frees up.
    os.close(ends[0][0])
    output.forget(ends[0][0])
    read_end, write_end = ends[2]
    fill(write_end, DEFAULT_SIZE)
    output.read(read_end)
    assert capacity(read_end) == MIB


def test_a_pipe_that_cannot_grow_is_not_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Beyond the user's pipe quota F_SETPIPE_SZ fails (EPERM); on a regular file too.
    path = tmp_path / "not-a-pipe"
    path.write_bytes(b"x" * DEFAULT_SIZE)
    calls = []
    real = fcntl.fcntl

    def counted(fd: int, cmd: int, arg: int) -> int:
        calls.append(cmd)
        return real(fd, cmd, arg)  # type: ignore[no-any-return]

    monkeypatch.setattr(pipes.fcntl, "fcntl", counted)
    output = OutputPipes()
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(3):
            os.lseek(fd, 0, os.SEEK_SET)
            assert len(output.read(fd)) == DEFAULT_SIZE
    finally:
        os.close(fd)
    assert calls == [pipes.F_SETPIPE_SZ]
    assert output.sizes == {fd: 0}
