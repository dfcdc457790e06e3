# json_api.py: the Python twin of examples/json_api.cpp (aiohttp): a small
# JSON API server (a to-do list) and a client session against it. The
# client session is the test: it lies between scaffold:begin and
# scaffold:end and is not counted (scripts/count_lines.py).
import asyncio
import functools
import itertools
import json

import aiohttp
from aiohttp import web

dumps = functools.partial(json.dumps, separators=(",", ":"))  # as compact as spindle's
routes = web.RouteTableDef()
todos = {}
next_id = itertools.count(1)


def reply(status, value):
    return web.json_response(value, status=status, dumps=dumps)


def not_found():
    return reply(404, {"error": "no such todo"})


@routes.get("/todos")
async def list_todos(request):
    return reply(200, list(todos.values()))


@routes.post("/todos")
async def create(request):
    try:
        body = await request.json()
    except (json.JSONDecodeError, RecursionError):  # not JSON, or nested too deep
        return reply(400, {"error": "body is not JSON"})
    if not isinstance(body, dict) or not isinstance(body.get("title"), str):
        return reply(400, {"error": "title missing"})
    item = {"id": next(next_id), "title": body["title"], "done": False}
    todos[item["id"]] = item
    return reply(201, item)


@routes.get("/todos/{id}")
async def get_one(request):
    item = todos.get(int(request.match_info["id"]))
    return reply(200, item) if item else not_found()


@routes.patch("/todos/{id}")
async def patch(request):
    item = todos.get(int(request.match_info["id"]))
    if not item:
        return not_found()
    try:
        body = await request.json()
    except (json.JSONDecodeError, RecursionError):
        return reply(400, {"error": "body is not JSON"})
    if isinstance(body, dict) and "done" in body:
        item["done"] = body["done"]
    return reply(200, item)


@routes.delete("/todos/{id}")
async def delete(request):
    if todos.pop(int(request.match_info["id"]), None) is None:
        return not_found()
    return web.Response(status=204)


async def main():
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    # scaffold:begin
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with aiohttp.ClientSession() as client:
        async def show(what, method, path, **kw):
            async with client.request(method, base + path, **kw) as r:
                print(f"{what} -> {r.status} {await r.text()}")

        await show("POST /todos", "POST", "/todos", json={"title": "write docs"})
        await show("POST /todos", "POST", "/todos", json={"title": "run benchmarks"})
        await show("POST /todos (bad)", "POST", "/todos", data="not json")
        await show("PATCH /todos/1", "PATCH", "/todos/1", data='{"done":true}')
        deep = '{"done":' + "[" * 100000 + "]" * 100000 + "}"
        await show("PATCH /todos/1 (deep)", "PATCH", "/todos/1", data=deep)
        await show("GET /todos/2", "GET", "/todos/2")
        await show("DELETE /todos/2", "DELETE", "/todos/2")
        await show("GET /todos/2", "GET", "/todos/2")
        await show("GET /todos", "GET", "/todos")
        async with client.get(base + "/todos") as r:
            all_ = await r.json()
    ok = len(all_) == 1 and all_[0]["done"] is True
    # scaffold:end
    await runner.cleanup()
    # scaffold:begin
    print("ok" if ok else "unexpected")
    return 0 if ok else 1
    # scaffold:end


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
