"""A userspace delay relay: a network with a round trip time, on loopback.

    relay.py --delay 0.025 --map LISTEN_PORT:TARGET_PORT ...

Kernel netem is not available here, so this relay sits between a proxy and
the test server and delays every chunk it reads by DELAY seconds in each
direction, in order, without limiting bandwidth (chunks are read as fast as
they come; each waits in a queue until its time).

The TCP handshake is emulated too: a real connect() takes one round trip
before the client may send, and the server accepts half a round trip later.
So the relay opens its connection to the server 3 * DELAY after it accepted
(SYN, SYN-ACK, ACK), and client bytes that arrived before that are
delivered at that moment (sent at 2 * DELAY, plus DELAY on the way).

Prints "ready" once listening.
"""

import argparse
import asyncio
import collections
import socket
import sys

READ_SIZE = 256 * 1024


class Direction:
    """Bytes from reader to writer, each chunk delivered at its deadline."""

    def __init__(self, loop, reader, writer, delay, not_before):
        self.loop = loop
        self.reader = reader
        self.writer = writer
        self.delay = delay
        self.not_before = not_before
        self.queue = collections.deque()        # (deadline, bytes or None)
        self.timer = None
        self.done = loop.create_future()

    async def pump(self):
        while True:
            try:
                data = await self.reader.read(READ_SIZE)
            except OSError:
                data = b""
            deadline = max(self.loop.time() + self.delay, self.not_before)
            self.queue.append((deadline, data or None))
            self._arm()
            if not data:
                return

    def _arm(self):
        """Wake up for the oldest chunk, once there is somewhere to go."""
        if self.timer is None and self.writer is not None and self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self._deliver)

    def _deliver(self):
        self.timer = None
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now:
            _, data = self.queue.popleft()
            try:
                if data is None:
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
                    if not self.done.done():
                        self.done.set_result(None)
                    return
                self.writer.write(data)
            except (OSError, RuntimeError):
                if not self.done.done():
                    self.done.set_result(None)
                return
        self._arm()


async def handle(client_r, client_w, target_port, delay):
    loop = asyncio.get_running_loop()
    open_at = loop.time() + 3 * delay
    sock = client_w.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    up = Direction(loop, client_r, None, delay, open_at)
    pump_up = asyncio.ensure_future(up.pump())
    await asyncio.sleep(max(0.0, open_at - loop.time()))
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1",
                                                           target_port)
    except OSError:
        pump_up.cancel()
        client_w.close()
        return
    server_w.get_extra_info("socket").setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    up.writer = server_w
    up._arm()
    down = Direction(loop, server_r, client_w, delay, 0.0)
    pump_down = asyncio.ensure_future(down.pump())
    await asyncio.wait([up.done, down.done],
                       return_when=asyncio.ALL_COMPLETED)
    for task in (pump_up, pump_down):
        task.cancel()
    for w in (client_w, server_w):
        w.close()


async def main_async(args):
    servers = []
    for spec in args.map:
        listen, target = (int(p) for p in spec.split(":"))

        async def on_client(r, w, target=target):
            await handle(r, w, target, args.delay)

        servers.append(await asyncio.start_server(
            on_client, "127.0.0.1", listen, backlog=1024,
            reuse_address=True))
    print("ready", flush=True)
    await asyncio.Event().wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--delay", type=float, default=0.025,
                    help="one-way delay in seconds (default 0.025)")
    ap.add_argument("--map", action="append", required=True,
                    help="LISTEN_PORT:TARGET_PORT on 127.0.0.1")
    args = ap.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
