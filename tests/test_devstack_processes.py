"""`nango dev`'s child servers and a terminal's Ctrl-C: only `nango dev` gets it, and it stops them in order."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.conftest import eventually

ROOT = Path(__file__).resolve().parent.parent
# stands in for `nango dev`: starts a server through ManagedProcess, then on SIGINT stops it itself
DRIVER = """
import asyncio, signal, sys
from pathlib import Path
from orchestrator.devstack.processes import ManagedProcess

SERVER = '''
import signal, sys, time
signal.signal(signal.SIGINT, lambda *_: (print("server got SIGINT", flush=True), sys.exit(3)))
signal.signal(signal.SIGTERM, lambda *_: (print("server stopped by its owner", flush=True), sys.exit(0)))
print("server up", flush=True)
while True:
    time.sleep(0.05)
'''

async def main() -> None:
    log = Path(sys.argv[1])
    server = ManagedProcess("server", [sys.executable, "-c", SERVER], log)
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    print("driver ready", flush=True)
    await stop.wait()
    await asyncio.sleep(0.3)  # the worker and the API would close their pools here, the servers still up
    print("server alive at stop:", server.proc.returncode is None, flush=True)
    await server.stop()
    print("server code:", server.proc.returncode, flush=True)

asyncio.run(main())
"""


async def test_ctrl_c_reaches_only_the_owner_which_stops_its_servers_itself(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    driver = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DRIVER, str(log), stdout=asyncio.subprocess.PIPE, start_new_session=True,
        cwd=ROOT)
    try:
        assert driver.stdout is not None
        while (line := await asyncio.wait_for(driver.stdout.readline(), 20)).strip() != b"driver ready":
            assert line, "the driver exited before it was ready"  # else: one of its log lines

        async def server_up() -> None:
            assert "server up" in log.read_text()
        await eventually(server_up, timeout=20)
        os.killpg(driver.pid, signal.SIGINT)  # what a terminal does on Ctrl-C: the whole foreground group
        out, _ = await asyncio.wait_for(driver.communicate(), 30)
    finally:
        if driver.returncode is None:
            driver.kill()
            await driver.wait()
    assert driver.returncode == 0, out
    assert b"server alive at stop: True" in out and b"server code: 0" in out
    assert "server got SIGINT" not in log.read_text() and "server stopped by its owner" in log.read_text()
