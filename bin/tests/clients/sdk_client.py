#!/usr/bin/env python3
"""Drive a built `agent-dispatch serve` with the official MCP Python SDK.

Usage: sdk_client.py <agent-dispatch binary> <scratch dir>

The scratch dir must already hold `web/` (a project with CLAUDE.md and
package.json). The server runs with AGENT_DISPATCH_CONFIG=<scratch>/agents.yaml,
AGENT_DISPATCH_JOBS_DIR=<scratch>/jobs and HOME=<scratch>/home, so nothing
outside the scratch dir is read or written.

This script only records what happened; it prints one JSON summary on stdout
and `bin/tests/real_clients.rs` asserts on it. It exits 0 whenever it could
print a summary (failures are data in the summary), 2 on bad usage.
"""

import asyncio
import json
import os
import stat
import sys
import traceback
from datetime import timedelta

from mcp import ClientSession, StdioServerParameters
from mcp import types as mcp_types
from mcp.client.stdio import stdio_client


def config_facts(path):
    """What is on disk at the config path right now."""
    facts = {"exists": os.path.exists(path)}
    if facts["exists"]:
        st = os.stat(path)
        facts["mode"] = stat.S_IMODE(st.st_mode)
        facts["dir_mode"] = stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)
        with open(path, encoding="utf-8") as fh:
            facts["text"] = fh.read()
    return facts


def result_record(label, tool, arguments, result):
    texts = [c.text for c in result.content if isinstance(c, mcp_types.TextContent)]
    record = {
        "label": label,
        "tool": tool,
        "arguments": arguments,
        "is_error": bool(result.isError),
        "content_types": [c.type for c in result.content],
        "texts": texts,
        "text_json": None,
        "text_is_json": False,
        "structured": result.structuredContent,
        "exception": None,
    }
    if texts:
        try:
            record["text_json"] = json.loads(texts[0])
            record["text_is_json"] = True
        except ValueError:
            pass
    return record


async def run(binary, root, summary):
    config = os.path.join(root, "agents.yaml")
    web = os.path.join(root, "web")
    missing = os.path.join(root, "does-not-exist")
    params = StdioServerParameters(
        command=binary,
        args=["serve"],
        env={
            "AGENT_DISPATCH_CONFIG": config,
            "AGENT_DISPATCH_JOBS_DIR": os.path.join(root, "jobs"),
            "HOME": os.path.join(root, "home"),
        },
        cwd=root,
    )
    summary.update(
        {
            "client_protocol_version": mcp_types.LATEST_PROTOCOL_VERSION,
            "steps": [],
            "log_messages": [],
            "config_before": config_facts(config),
        }
    )

    async def on_log(params):
        summary["log_messages"].append({"level": params.level, "data": params.data})

    with open(os.path.join(root, "server-stderr.log"), "w", encoding="utf-8") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(
                read,
                write,
                read_timeout_seconds=timedelta(seconds=30),
                logging_callback=on_log,
            ) as session:
                init = await session.initialize()
                summary["protocol_version"] = init.protocolVersion
                summary["server_info"] = init.serverInfo.model_dump(mode="json", exclude_none=True)
                summary["capabilities"] = init.capabilities.model_dump(
                    mode="json", by_alias=True, exclude_none=True
                )
                summary["instructions"] = init.instructions

                listed = await session.list_tools()
                summary["tools"] = [
                    t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed.tools
                ]

                async def call(label, tool, arguments):
                    try:
                        result = await session.call_tool(tool, arguments)
                        record = result_record(label, tool, arguments, result)
                    except Exception as exc:  # the SDK raises on schema violations
                        record = {
                            "label": label,
                            "tool": tool,
                            "arguments": arguments,
                            "exception": f"{type(exc).__name__}: {exc}",
                        }
                    summary["steps"].append(record)
                    return record

                await call("list_empty", "list_agents", {})
                await call("add_web", "add_agent", {"name": "web", "directory": web})
                summary["config_after_add"] = config_facts(config)
                await call("list_one", "list_agents", {})
                await call("inspect_web", "inspect_agent", {"name": "web"})
                await call(
                    "update_web",
                    "update_agent",
                    {"name": "web", "timeout": 600, "model": "sonnet"},
                )
                await call("inspect_updated", "inspect_agent", {"name": "web"})
                await call("add_bad_name", "add_agent", {"name": "bad name!", "directory": web})
                await call("add_newline_name", "add_agent", {"name": "web2\n", "directory": web})
                await call("update_negative_timeout", "update_agent", {"name": "web", "timeout": -5})
                await call("add_missing_dir", "add_agent", {"name": "ghost", "directory": missing})
                summary["config_after_errors"] = config_facts(config)
                await call("remove_web", "remove_agent", {"name": "web"})
                await call("list_after_remove", "list_agents", {})
                summary["config_after_remove"] = config_facts(config)
    summary["completed"] = True


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary, root = argv[1], argv[2]
    summary = {"completed": False}
    try:
        asyncio.run(run(binary, root, summary))
    except BaseException:  # noqa: BLE001 - report anything, the Rust side decides
        summary["completed"] = False
        summary["fatal"] = traceback.format_exc()
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
