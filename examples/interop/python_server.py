# SPDX-License-Identifier: MIT
"""Python patio 0.1.4 serving a C++ caller: patio's own client-is-caller
server, called by patio-example-client --patio-compat.

    python3 python_server.py
    ./patio-example-client --connect 127.0.0.1:15383 --patio-compat --key secret

Needs Python patio (pip install patio==0.1.4); nothing here is patio-cpp's.
"""
import asyncio
from functools import reduce

from patio import Registry
from patio.broker.tcp import TCPServerBroker
from patio.executor import ThreadPoolExecutor

rpc = Registry(project="patio-example", strict=True)


def mul(*args):
    return reduce(lambda x, y: x * y, args)


async def main():
    rpc.register(mul, "mul")
    async with ThreadPoolExecutor(rpc) as executor:
        async with TCPServerBroker(executor, key=b"secret") as broker:
            await broker.listen(address="127.0.0.1", port=15383)
            await broker.join()


if __name__ == "__main__":
    asyncio.run(main())
