"""Documents the AI summarises, their chunks, and a log of every LLM call."""

from __future__ import annotations

from django.db import models


class Document(models.Model):
    title = models.CharField(max_length=200)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title


class Chunk(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    position = models.PositiveIntegerField()
    text = models.TextField()

    class Meta:
        ordering = ["document_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["document", "position"], name="unique_chunk_position")
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.position}"


class AICall(models.Model):
    """One call to the LLM, successful or not, as the views log it."""

    endpoint = models.CharField(max_length=100, default="chat")
    prompt = models.TextField()
    reply = models.TextField(blank=True, default="")
    model = models.CharField(max_length=100)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.FloatField(default=0.0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=8, null=True, blank=True)
    ok = models.BooleanField(default=True)
    error = models.CharField(max_length=500, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        status = "ok" if self.ok else f"failed: {self.error}"
        return f"{self.model} {self.latency_ms:.0f} ms {status}"
