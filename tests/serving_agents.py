"""A host process for the serving tests: its agents ask a model server concurrently.

``python -m tests.serving_agents ADDRESS`` reads a JSON list of
``{"agent", "prompt", "adapter", "max_tokens"}`` from stdin, sends one
``Generate`` per agent at the same time through one shared ``Client`` (as a
host does), and prints ``{agent: text}`` (or ``{agent: "error: <code>"}``) as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from swarm.errors import RemoteError
from swarm.transport.peers import Client
from swarm.wire.codec import Generate, Generated, GenRequest


async def _ask(client: Client, job: dict[str, Any]) -> str:
    req = GenRequest(prompt=job["prompt"], adapter=job["adapter"], max_tokens=job["max_tokens"],
                     agent_id=job["agent"])  # fmt: skip
    try:
        reply = await client.request(Generate(sender=job["agent"], requests=[req]), timeout=120)
    except RemoteError as exc:
        return f"error: {exc.remote_code}"
    assert isinstance(reply.msg, Generated)
    return reply.msg.texts[0]


async def main(address: str, jobs: list[dict[str, Any]]) -> dict[str, str]:
    """Every agent's answer, asked concurrently over one socket."""
    async with Client(f"host-{os.getpid()}", address) as client:  # a routing id per process
        texts = await asyncio.gather(*(_ask(client, job) for job in jobs))
    return {job["agent"]: text for job, text in zip(jobs, texts, strict=True)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], json.load(sys.stdin)))))
