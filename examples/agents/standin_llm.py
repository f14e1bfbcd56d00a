#!/usr/bin/env python3
"""A small stand-in for an OpenAI-style LLM server, for demos and tests on machines without
network: POST /v1/chat/completions answers from the last user message, as one JSON body or,
with "stream": true, as server-sent events a few words at a time; POST /v1/messages answers
Anthropic-style (unstreamed); POST /v1/responses answers as OpenAI's Responses API does, streamed
or not: while the request offers function tools it has not yet had an output for, it calls the
next one (arguments "{}"), then it answers with what the last tool returned.

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
                or self.headers.get("x-api-key")):
            return self.reply(401, json.dumps({"error": {"message": "missing API key"}}))
        if LOG:
            last = next((m.get("content", "") for m in reversed(request.get("messages", []))
                         if m.get("role") == "user"), "")
            with open(LOG, "a") as log:
                log.write("%s %s\n" % (self.path, json.dumps(last)))
        if self.path.endswith("/messages"):  # Anthropic's Messages API, unstreamed
            return self.reply(200, json.dumps({
                "id": "msg_standin", "type": "message", "role": "assistant",
                "model": request.get("model", "standin-1"), "stop_reason": "end_turn",
                "content": [{"type": "text", "text": answer_for(request.get("messages", []))}],
                "usage": {"input_tokens": 10, "output_tokens": 5}}))
        if self.path.endswith("/responses"):
            return self.respond(request)
        if not self.path.endswith("/chat/completions"):
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
        turn = len(outputs)
        if turn < len(tools):
            item = {"type": "function_call", "id": "fc_%d" % turn, "call_id": "call_%d" % turn,
                    "name": tools[turn], "arguments": "{}", "status": "completed"}
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
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
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
            self.chunk("event: %s\ndata: %s\n\n" % (event["type"], json.dumps(event)))
            time.sleep(CHUNK_SECONDS)
        self.wfile.write(b"0\r\n\r\n")

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
