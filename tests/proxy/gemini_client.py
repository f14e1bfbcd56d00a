"""A client of Google's Gemini API, as Google's Gen AI SDKs (and Gemini CLI) call it: the base URL
from GOOGLE_GEMINI_BASE_URL, the key in an x-goog-api-key header. It asks for a JSON answer that
fits a schema, then for a streamed answer (server-sent events), and prints both."""
import json
import os
import urllib.request

BASE = os.environ["GOOGLE_GEMINI_BASE_URL"].rstrip("/")
HEADERS = {"content-type": "application/json", "x-goog-api-key": os.environ["GEMINI_API_KEY"]}


def post(path, body):
    request = urllib.request.Request(BASE + path, json.dumps(body).encode(), HEADERS)
    return urllib.request.urlopen(request, timeout=30)


schema = {"type": "OBJECT", "required": ["next_speaker", "reasoning"],
          "properties": {"next_speaker": {"type": "STRING", "enum": ["user", "model"]},
                         "reasoning": {"type": "STRING"}}}
with post("/v1beta/models/standin-1:generateContent",
          {"contents": [{"role": "user", "parts": [{"text": "who speaks next?"}]}],
           "generationConfig": {"responseMimeType": "application/json",
                                "responseJsonSchema": schema}}) as answer:
    parts = json.load(answer)["candidates"][0]["content"]["parts"]
print("json:", parts[0]["text"])

words = []
with post("/v1beta/models/standin-1:streamGenerateContent?alt=sse",
          {"contents": [{"role": "user", "parts": [{"text": "tell the next step of the plan"}]}]}) as answer:
    for line in answer:
        if line.startswith(b"data: "):
            event = json.loads(line[6:])
            words += [part.get("text", "") for part in event["candidates"][0]["content"]["parts"]]
print("streamed in %d events: %s" % (len(words), "".join(words)))
