"""`python -m labproject seed`: load the deterministic corpus (idempotent)."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.core.management.color import no_style
from django.db import connection, transaction

from labproject.ai import corpus
from labproject.ai.models import Chunk, Document


class Command(BaseCommand):
    help = "Create the course's documents and chunks; does nothing if they already exist."

    def add_arguments(self, parser):
        parser.add_argument("--documents", type=int, default=corpus.DOCUMENTS)
        parser.add_argument("--chunks", type=int, default=corpus.CHUNKS_PER_DOCUMENT)
        parser.add_argument("--force", action="store_true", help="delete and recreate the corpus")

    def handle(self, *args, documents: int, chunks: int, force: bool, verbosity: int, **options):
        expected = documents * chunks
        # The corpus is ids 1..documents; documents a notebook or a check added beside it are
        # not the corpus's business (a second boot() must not wipe a notebook's own rows).
        corpus_ids = (1, documents)
        if (
            not force
            and Document.objects.filter(pk__range=corpus_ids).count() == documents
            and Chunk.objects.filter(document__pk__range=corpus_ids).count() == expected
        ):
            if verbosity:
                self.stdout.write(f"corpus present: {documents} documents, {expected} chunks")
            return
        with transaction.atomic():
            Document.objects.all().delete()
            for number, spec in enumerate(corpus.generate(documents, chunks), start=1):
                # Explicit ids: /api/documents/1/summary/ is the same document on every machine.
                document = Document.objects.create(id=number, title=spec.title)
                Chunk.objects.bulk_create(
                    Chunk(document=document, position=i, text=text)
                    for i, text in enumerate(spec.chunks, start=1)
                )
            # Explicit ids leave PostgreSQL's id sequences behind: move them past the corpus,
            # so rows created later (a check's fresh documents) get ids of their own.
            with connection.cursor() as cursor:
                for sql in connection.ops.sequence_reset_sql(no_style(), [Document, Chunk]):
                    cursor.execute(sql)
        if verbosity:
            self.stdout.write(f"corpus seeded: {documents} documents, {expected} chunks")
