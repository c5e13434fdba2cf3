# SPDX-License-Identifier: MIT
"""Python patio 0.1.4 calling a C++ worker: patio's own client-is-caller
example, pointed at patio-example-server --patio-compat.

    ./patio-example-server --listen 127.0.0.1:15383 --patio-compat --key secret
    python3 python_client.py            # [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]

Needs Python patio (pip install patio==0.1.4); nothing here is patio-cpp's.
"""
import asyncio

from patio import Registry
from patio.broker.tcp import TCPClientBroker
from patio.executor import ThreadPoolExecutor

rpc = Registry(project="patio-example", strict=True)


async def main():
    async with ThreadPoolExecutor(rpc) as executor:
        async with TCPClientBroker(executor, key=b"secret") as broker:
            await broker.connect(address="127.0.0.1", port=15383)
            print(await asyncio.gather(*[broker.call("mul", i, i) for i in range(10)]))
            # A C++ exception arrives as a builtin Python one.
            try:
                await broker.call("div", 1, 0)
            except RuntimeError as e:
                print("div(1, 0) failed:", e)


if __name__ == "__main__":
    asyncio.run(main())
