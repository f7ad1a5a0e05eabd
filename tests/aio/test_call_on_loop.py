"""``call_on_loop``: how the async faces' ``stop()`` reaches their loop from anywhere."""

from __future__ import annotations

import asyncio
import threading

from paykafka._signals import call_on_loop


def test_on_the_loop_it_runs_at_once() -> None:
    async def main() -> list[str]:
        ran: list[str] = []
        assert call_on_loop(asyncio.get_running_loop(), lambda: ran.append("now"))
        return ran  # no await in between: it ran inside the call

    assert asyncio.run(main()) == ["now"]


def test_from_another_thread_it_runs_on_the_loop_thread() -> None:
    async def main() -> tuple[bool, str]:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        ran_in: list[str] = []

        def mark() -> None:
            ran_in.append(threading.current_thread().name)
            done.set()

        accepted: list[bool] = []
        caller = threading.Thread(target=lambda: accepted.append(call_on_loop(loop, mark)))
        caller.start()
        await asyncio.wait_for(done.wait(), 5)
        caller.join()
        return accepted[0], ran_in[0]

    accepted, ran_in = asyncio.run(main())
    assert accepted
    assert ran_in == threading.current_thread().name  # the loop's thread, not the caller's


def test_without_an_open_loop_it_says_so() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    ran: list[str] = []
    assert not call_on_loop(None, lambda: ran.append("x"))
    assert not call_on_loop(loop, lambda: ran.append("x"))
    assert ran == []
