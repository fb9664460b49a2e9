"""A parser for budget tests, importable by spawned worker processes: it reads a file's text, but
a file named `*.hang` never finishes (asleep, using no CPU), `*.spin` never finishes either while
burning CPU inside one C call that holds the GIL (as a parser library can), `*.burn` burns as
many seconds of CPU as its text says and then reads, and `*.hog` allocates 1.5 GB and waits;
each file read leaves a mark in a `marks` folder beside the source folder, where there is one,
as its read starts."""

from __future__ import annotations

import os
import time

from ingest.types import Element, ParsedDocument, SourceFile


class StallingParser:
    def parse(self, source: SourceFile) -> ParsedDocument:
        marks = source.path.parent.parent / "marks"
        if marks.is_dir():  # which documents were read, for tests of read-ahead and of workers
            (marks / source.path.name).touch()
        if source.path.suffix == ".hang":
            time.sleep(3600)
        if source.path.suffix == ".spin":
            sum(range(10**14))  # hours of CPU in C; no other thread of the worker runs meanwhile
        if source.path.suffix == ".burn":
            until = time.process_time() + float(source.path.read_text())
            while time.process_time() < until:
                pass
        if source.path.suffix == ".hog":
            held = []
            for _ in range(48):  # 1.5 GB of touched pages, which count in the resident set
                held.append(bytearray(os.urandom(1)) * (32 << 20))
                time.sleep(0.02)
            time.sleep(3600)
        if source.path.suffix == ".crash":
            os._exit(3)
        text = source.path.read_text()
        return ParsedDocument(
            source=source,
            content_hash="",
            elements=[Element(text=text, category="NarrativeText")],
            title=source.path.stem,
            filetype=source.path.suffix.lstrip("."),
        )
