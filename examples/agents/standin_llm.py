#!/usr/bin/env python3
"""A small stand-in for an OpenAI-style LLM server, for demos and tests on machines without
network: POST /v1/chat/completions answers from the last user message, as one JSON body or,
with "stream": true, as server-sent events a few words at a time; POST /v1/messages answers as
Anthropic's Messages API does, streamed or not: offered tools, it drives a coding agent's task a
tool_use block a turn (Bash commands that sleep, draw randomness and read the clock, a file
written and read back; see messages_turn), then answers in text; POST /v1/responses answers as
OpenAI's Responses API does, streamed or not: while the request offers function tools it has
not yet had an output for, it calls the next one (arguments "{}"; offered Codex CLI's
exec_command, the shell commands of CODING_TASK_COMMANDS instead), then it answers with what
the last tool returned; POST …:generateContent and …:streamGenerateContent answer as Gemini's
API does (a JSON value that fits the schema asked for, or Gemini CLI's task a functionCall a turn;
see gemini_turn).

    python3 standin_llm.py [--port N] [--chunk-ms MS] [--log FILE]
                                        prints "listening on PORT" once ready; --log appends
                                        a line per request: its path and last user message

It answers deterministically (the same request gets the same answer), so that a recording and
a later one can be compared; an Authorization header is required, as a real server would.
"""
import argparse
import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK_SECONDS = 0.02  # between two events of a streamed answer (--chunk-ms)
LOG = None  # --log: where each request is noted, so a test can count what reached the server


def answer_for(messages):
    last = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    words = last.split()
    return "Plan for '%s': %d words considered; step one is to start small." % (
        " ".join(words[:6]), len(words))


def tool_results(messages):
    """The tool_result blocks of a Messages conversation, in order, as text."""
    results = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                inner = block.get("content", "")
                if isinstance(inner, list):
                    inner = "".join(part.get("text", "") for part in inner if isinstance(part, dict))
                results.append(str(inner))
    return results


# A coding agent's task for an agent whose only tool is a shell: it sleeps, draws randomness,
# reads the clock, makes an id, then writes a file and reads it back.
CODING_TASK_COMMANDS = [
    "sleep 1 && echo slept",
    "echo \"random $RANDOM at $(date +%s%N)\"",
    "python3 -c 'import uuid; print(uuid.uuid4())'",
    "printf 'the plan: start small\\n' > notes.txt",
    "cat notes.txt",
]


def messages_turn(request):
    """A coding agent's task, one step a turn, counted by the tool results it has had: with a
    Bash tool (Claude Code's), commands that sleep, draw randomness and read the clock; with Write
    and Read, a file written then read back; then a text answer quoting the last result. Offered
    other tools, it calls each in turn with no arguments. Returns (content block, stop_reason)."""
    tools = {t.get("name", ""): t for t in request.get("tools", []) if isinstance(t, dict)}
    system = request.get("system", "")
    if isinstance(system, list):
        system = " ".join(part.get("text", "") for part in system if isinstance(part, dict))
    folder = re.search(r"[Ww]orking directory: (\S+)", system)
    notes = (folder.group(1) + "/" if folder else "") + "notes.txt"
    steps = []
    if "Bash" in tools:
        steps += [("Bash", {"command": "sleep 1 && echo slept", "description": "Wait a second"}),
                  ("Bash", {"command": "echo \"random $RANDOM at $(date +%s%N)\"",
                            "description": "Draw a number"}),
                  ("Bash", {"command": "python3 -c 'import uuid; print(uuid.uuid4())'",
                            "description": "Make an id"})]
    if "Write" in tools and "Read" in tools:
        steps += [("Write", {"file_path": notes, "content": "the plan: start small\n"}),
                  ("Read", {"file_path": notes})]
    if not steps:
        steps = [(name, {}) for name in tools]
    results = tool_results(request.get("messages", []))
    if len(results) < len(steps):
        name, arguments = steps[len(results)]
        return ({"type": "tool_use", "id": "toolu_standin_%d" % len(results), "name": name,
                 "input": arguments}, "tool_use")
    if results:
        text = "Done. The last tool said: %s" % results[-1].strip()[:200]
    else:
        text = answer_for([m for m in request.get("messages", []) if isinstance(m, dict)
                           and isinstance(m.get("content"), str)])
    return {"type": "text", "text": text}, "end_turn"


def schema_value(schema):
    """A value that fits a Gemini response schema (OpenAPI's subset, or JSON Schema): an enum's
    first value, each required property of an object, one item of an array."""
    schema = schema if isinstance(schema, dict) else {}
    kind = str(schema.get("type", "object")).lower()
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "object":
        properties = schema.get("properties", {})
        wanted = schema.get("required", list(properties))
        return {name: schema_value(properties.get(name, {})) for name in wanted}
    if kind == "array":
        return [schema_value(schema.get("items", {}))]
    return {"string": "standin", "number": 1, "integer": 1, "boolean": False}.get(kind, None)


def gemini_turn(request):
    """Gemini's generateContent: asked for JSON (responseMimeType application/json), a value
    that fits the schema given; offered function declarations, a coding agent's task a
    functionCall a turn (Gemini CLI's run_shell_command, write_file, read_file: commands that sleep,
    draw randomness and read the clock, a file written and read back), then text. Returns the
    answer's parts."""
    config = request.get("generationConfig", {})
    if config.get("responseMimeType") == "application/json":
        schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
        return [{"text": json.dumps(schema_value(schema))}]
    tools = {}
    for tool in request.get("tools", []):
        for declaration in tool.get("functionDeclarations", []) if isinstance(tool, dict) else []:
            tools[declaration.get("name", "")] = declaration
    contents = [c for c in request.get("contents", []) if isinstance(c, dict)]
    results = [part["functionResponse"] for c in contents for part in c.get("parts", [])
               if isinstance(part, dict) and "functionResponse" in part]
    text = " ".join(part.get("text", "") for c in contents for part in c.get("parts", [])
                    if isinstance(part, dict) and isinstance(part.get("text"), str))
    folder = re.search(r"(?:Workspace Directories|working directory)[^/]*(/\S+)", text)
    notes = (folder.group(1).rstrip("/") + "/" if folder else "") + "notes.txt"
    steps = []
    if "run_shell_command" in tools:
        steps += [("run_shell_command", {"command": "sleep 1 && echo slept"}),
                  ("run_shell_command", {"command": "echo \"random $RANDOM at $(date +%s%N)\""}),
                  ("run_shell_command", {"command": "python3 -c 'import uuid; print(uuid.uuid4())'"})]
    if "write_file" in tools and "read_file" in tools:
        path_field = "file_path" if "file_path" in json.dumps(tools["read_file"]) else "absolute_path"
        steps += [("write_file", {"file_path": notes, "content": "the plan: start small\n"}),
                  ("read_file", {path_field: notes})]
    if len(results) < len(steps):
        name, arguments = steps[len(results)]
        return [{"functionCall": {"name": name, "args": arguments}}]
    if results:
        return [{"text": "Done. The last tool said: %s" % json.dumps(results[-1].get("response"))[:200]}]
    return [{"text": answer_for([{"role": "user", "content": text}])}]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet: the demo's output is the agent's
        pass

    def reply(self, status, body, content_type="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            return self.reply(400, json.dumps({"error": {"message": "body is not JSON"}}))
        if not (self.headers.get("Authorization", "").startswith("Bearer ")
                or self.headers.get("x-api-key") or self.headers.get("x-goog-api-key")):
            return self.reply(401, json.dumps({"error": {"message": "missing API key"}}))
        if LOG:
            last = next((m.get("content", "") for m in reversed(request.get("messages", []))
                         if m.get("role") == "user"), "")
            with open(LOG, "a") as log:
                log.write("%s %s\n" % (self.path, json.dumps(last)))
        route = self.path.split("?", 1)[0]  # Anthropic's SDK adds ?beta=true
        if route.endswith(":countTokens"):
            return self.reply(200, json.dumps({"totalTokens": len(json.dumps(request)) // 4}))
        if route.endswith(":generateContent") or route.endswith(":streamGenerateContent"):
            return self.gemini(request, route.endswith(":streamGenerateContent"))
        if route.endswith("/messages/count_tokens"):
            return self.reply(200, json.dumps({"input_tokens": len(json.dumps(request)) // 4}))
        if route.endswith("/messages"):
            return self.messages(request)
        if route.endswith("/responses"):
            return self.respond(request)
        if not route.endswith("/chat/completions"):
            return self.reply(404, json.dumps({"error": {"message": "no route " + self.path}}))
        text = answer_for(request.get("messages", []))
        model = request.get("model", "standin-1")
        if not request.get("stream"):
            return self.reply(200, json.dumps({
                "id": "chatcmpl-standin", "object": "chat.completion", "created": 1700000000,
                "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()),
                          "total_tokens": 10 + len(text.split())}}))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        words = text.split(" ")
        for i in range(0, len(words), 3):
            piece = " ".join(words[i:i + 3]) + (" " if i + 3 < len(words) else "")
            self.chunk("data: " + json.dumps({
                "id": "chatcmpl-standin", "object": "chat.completion.chunk",
                "created": 1700000000, "model": model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                + "\n\n")
            time.sleep(CHUNK_SECONDS)  # a real server takes its time between events
        self.chunk("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def respond(self, request):
        """The Responses API: a function call per offered tool in turn, then a message."""
        items = request.get("input", [])
        items = items if isinstance(items, list) else [{"role": "user", "content": items}]
        outputs = [i.get("output", "") for i in items
                   if isinstance(i, dict) and i.get("type") == "function_call_output"]
        tools = [t.get("name", "") for t in request.get("tools", []) if t.get("type") == "function"]
        # Codex CLI's shell tool: a coding agent's task as commands (see messages_turn).
        steps = [("exec_command", json.dumps({"cmd": command, "yield_time_ms": 10000}))
                 for command in CODING_TASK_COMMANDS] if "exec_command" in tools else \
            [(name, "{}") for name in tools]
        turn = len(outputs)
        if turn < len(steps):
            name, arguments = steps[turn]
            item = {"type": "function_call", "id": "fc_%d" % turn, "call_id": "call_%d" % turn,
                    "name": name, "arguments": arguments, "status": "completed"}
        else:
            last = outputs[-1] if outputs else "nothing was run"
            text = "Done. The last tool said: %s" % (last if isinstance(last, str)
                                                     else json.dumps(last))
            item = {"type": "message", "id": "msg_%d" % turn, "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}
        response = {"id": "resp_%d" % turn, "object": "response", "created_at": 1700000000,
                    "status": "completed", "model": request.get("model", "standin-1"),
                    "output": [item], "usage": {"input_tokens": 10, "output_tokens": 5,
                                                "total_tokens": 15}}
        if not request.get("stream"):
            return self.reply(200, json.dumps(response))
        started = dict(response, status="in_progress", output=[])
        events = [{"type": "response.created", "response": started},
                  {"type": "response.output_item.added", "output_index": 0,
                   "item": dict(item, status="in_progress")}]
        if item["type"] == "message":
            events += [{"type": "response.output_text.delta", "item_id": item["id"],
                        "output_index": 0, "content_index": 0, "delta": word}
                       for word in re.findall(r"\S+\s*", item["content"][0]["text"])]
        events += [{"type": "response.output_item.done", "output_index": 0, "item": item},
                   {"type": "response.completed", "response": response}]
        for number, event in enumerate(events):
            event["sequence_number"] = number
        self.stream_events([(event["type"], event) for event in events])

    def gemini(self, request, streamed):
        """Gemini's API (generateContent, streamGenerateContent with alt=sse): see gemini_turn."""
        parts = gemini_turn(request)
        usage = {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}
        def answer(pieces, finished):
            candidate = {"content": {"role": "model", "parts": pieces}, "index": 0}
            if finished:
                candidate["finishReason"] = "STOP"
            return {"candidates": [candidate], "usageMetadata": usage,
                    "modelVersion": "standin-1", "responseId": "standin"}
        if not streamed:
            return self.reply(200, json.dumps(answer(parts, True)))
        pieces = [[part] for part in parts]
        if "text" in parts[0]:
            words = re.findall(r"\S+\s*", parts[0]["text"]) or [""]
            pieces = [[{"text": word}] for word in words]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for number, piece in enumerate(pieces):
            self.chunk("data: %s\r\n\r\n" % json.dumps(answer(piece, number == len(pieces) - 1)))
            time.sleep(CHUNK_SECONDS)  # a real server takes its time between events
        self.wfile.write(b"0\r\n\r\n")

    def stream_events(self, events):
        """Named server-sent events, one chunk each, a pause apart, then the stream's end."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for name, event in events:
            self.chunk("event: %s\ndata: %s\n\n" % (name, json.dumps(event)))
            time.sleep(CHUNK_SECONDS)  # a real server takes its time between events
        self.wfile.write(b"0\r\n\r\n")

    def messages(self, request):
        """Anthropic's Messages API, streamed or not: with tools offered, a coding agent's task
        (messages_turn), one tool_use block a turn; without, a text answer."""
        block, stop_reason = messages_turn(request)
        model = request.get("model", "standin-1")
        turn = len(tool_results(request.get("messages", [])))
        message = {"id": "msg_standin_%d" % turn, "type": "message", "role": "assistant",
                   "model": model, "content": [block], "stop_reason": stop_reason,
                   "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 5}}
        if not request.get("stream"):
            return self.reply(200, json.dumps(message))
        started = dict(message, content=[], stop_reason=None,
                       usage={"input_tokens": 10, "output_tokens": 1})
        events = [("message_start", {"message": started})]
        if block["type"] == "tool_use":
            arguments = json.dumps(block["input"])
            events.append(("content_block_start",
                           {"index": 0, "content_block": dict(block, input={})}))
            events += [("content_block_delta",
                        {"index": 0, "delta": {"type": "input_json_delta",
                                               "partial_json": arguments[i:i + 24]}})
                       for i in range(0, len(arguments), 24)]
        else:
            events.append(("content_block_start",
                           {"index": 0, "content_block": {"type": "text", "text": ""}}))
            events += [("content_block_delta",
                        {"index": 0, "delta": {"type": "text_delta", "text": word}})
                       for word in re.findall(r"\S+\s*", block["text"])]
        events += [("content_block_stop", {"index": 0}),
                   ("message_delta", {"delta": {"stop_reason": stop_reason,
                                                "stop_sequence": None},
                                      "usage": {"output_tokens": 5}}),
                   ("message_stop", {})]
        self.stream_events([(name, dict(type=name, **event)) for name, event in events])

    def chunk(self, text):
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--chunk-ms", type=int, default=20,
                        help="the pause between two events of a streamed answer")
    parser.add_argument("--log", help="append a line per request to this file")
    args = parser.parse_args()
    if args.chunk_ms < 0:
        parser.error("argument --chunk-ms: must not be negative")
    global CHUNK_SECONDS, LOG
    CHUNK_SECONDS = args.chunk_ms / 1000
    LOG = args.log
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("listening on %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
