"""A locustfile to take home: load your own Django app's AI endpoints the way the lab did.

Copy this file next to your project and run, against a server you own:

    locust -f locustfile_takehome.py --host http://127.0.0.1:8000 \
        --headless -u 50 -r 50 -t 60s --only-summary

Drop `--headless ... --only-summary` to watch Locust's web UI instead. Point it only at
machines you are allowed to load: a load test is indistinguishable from an attack.

What the lab taught, kept here:
- Use FastHttpUser: it costs the load generator far less CPU than HttpUser, and a generator
  pinned at 100% CPU measures itself, not your server. If Locust warns about CPU, add
  `--processes 2` (or more, up to your cores) before trusting any number.
- Set a client timeout, so a stuck server shows up as errors instead of a hung test.
- Send JSON bodies, not form posts: Django's request.POST is empty for JSON, so a view must
  read json.loads(request.body). And a view reached from outside the test client needs CSRF
  handled (csrf_exempt for a token-authenticated API), or every POST comes back 403.
- Vary the prompts. Identical prompts hit your response cache and flatter the numbers;
  REPEAT_SHARE below sends a chosen share of repeats when you want to measure the cache.
- Report p95 with the scenario (users, the LLM latency, workers) and the bound it implies:
  with N users and an upstream latency of L seconds, no server can exceed N / L requests/s
  (Little's law), and with W sync workers it cannot exceed W / L.
"""

from __future__ import annotations

import itertools
import os
import random

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser

# Tune through the environment, e.g. `REPEAT_SHARE=0.5 DOCUMENTS=50 locust -f ...`.
REPEAT_SHARE = float(os.environ.get("REPEAT_SHARE", "0"))
DOCUMENTS = int(os.environ.get("DOCUMENTS", "20"))
TIMEOUT_S = float(os.environ.get("TIMEOUT_S", "30"))

PROMPTS = [
    "Explain async views in Django in two sentences.",
    "What does a connection pool do for an HTTP client?",
    "Summarise Little's law for a web developer.",
    "What is the N+1 query problem?",
    "What is the difference between p50 and p95 latency?",
]


class AIUser(FastHttpUser):
    """One visitor: mostly chats, sometimes asks for a document summary."""

    # Real people pause between requests. Use constant(0) to find the server's ceiling instead.
    wait_time = between(1, 3)
    network_timeout = TIMEOUT_S
    connection_timeout = TIMEOUT_S

    def on_start(self) -> None:
        self.counter = itertools.count()
        self.documents = itertools.cycle(range(1, DOCUMENTS + 1))

    def prompt(self) -> str:
        if random.random() < REPEAT_SHARE:
            return random.choice(PROMPTS)  # the same text again: a cache can answer it
        # A unique suffix, so no cache can answer it.
        return f"{random.choice(PROMPTS)} (request {id(self)}-{next(self.counter)})"

    @task(3)
    def chat(self) -> None:
        self.client.post("/api/chat/", json={"prompt": self.prompt()})

    @task(1)
    def summary(self) -> None:
        # One name for every id, so Locust's table has one row instead of one per document.
        self.client.get(
            f"/api/documents/{next(self.documents)}/summary/",
            name="/api/documents/[id]/summary/",
        )
