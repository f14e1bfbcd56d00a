"""Timers between streamed model calls, as an asyncio agent makes them: four streamed chat
completions over one kept-alive httpx connection, each followed by a timer of 0, 1, 10 or 500 ms,
after which the program prints both clocks. With `chain`, a second chain of timers runs beside it
the whole time, as a tracing exporter's does: it posts to an endpoint that refuses it (the
testbench denies the connect), backs off 10, 20, 40 … 160 ms, and tries again. Every line it
prints is what a replay must print again."""
import asyncio
import datetime
import os
import sys
import time

import httpx

BASE = os.environ["OPENAI_BASE_URL"].rstrip("/")
CHAIN = sys.argv[1:] == ["chain"]


def clocks():
    wall = datetime.datetime.fromtimestamp(time.time(), datetime.timezone.utc)
    return "wall=%s mono=%.3f" % (wall.isoformat(timespec="milliseconds"), time.monotonic())


async def streamed_call(client, turn):
    body = {"model": "standin-1", "stream": True,
            "messages": [{"role": "user", "content": "turn %d: tell the next step of the plan" % turn}]}
    events = 0
    async with client.stream("POST", BASE + "/chat/completions", json=body) as answer:
        async for line in answer.aiter_lines():
            events += line.startswith("data: ")
    return events


ATTEMPTS = 0


async def exporter(stopped):
    global ATTEMPTS
    backoff = 0.010
    async with httpx.AsyncClient(timeout=5) as client:
        while not stopped.is_set():
            try:
                await client.post("http://127.0.0.1:9/v1/traces", content=b"{}")
            except httpx.HTTPError:
                pass
            ATTEMPTS += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.160)


async def main():
    stopped = asyncio.Event()
    exporting = asyncio.create_task(exporter(stopped)) if CHAIN else None
    headers = {"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]}
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        for turn, ms in enumerate((0, 1, 10, 500)):
            events = await streamed_call(client, turn)
            await asyncio.sleep(ms / 1000)
            print("turn %d: %d events, after a %d ms timer: %s" % (turn, events, ms, clocks()),
                  flush=True)
    stopped.set()
    if exporting:
        await exporting
    print("done: " + clocks() + (", the exporter tried %d times" % ATTEMPTS if CHAIN else ""))


asyncio.run(main())
