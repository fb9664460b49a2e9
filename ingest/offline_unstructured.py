"""Make `unstructured` usable offline: no analytics and no spaCy model download.

`unstructured` pings an analytics endpoint when imported and, at the first text classification,
downloads the spaCy model `en_core_web_sm`. Offline, the download fails and every partitioner
fails with it. `prepare_unstructured()` opts out of analytics before the import and, when the
spaCy model is not installed, gives unstructured a small rule-based English pipeline: spaCy's
rule-based sentencizer plus a verb lexicon. unstructured only uses the model to split sentences
and to ask "does this text contain a verb?" when telling narrative text from titles, so the
lexicon keeps that distinction without any model files. Installing `en_core_web_sm` makes it
used instead.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

# Parser libraries log per-file warnings (unresolved RST references, PDF colour spaces, a missing
# EOF marker) that are noise next to Sluice's own per-file report; in a parse process nothing
# else would catch them, and Python prints them to stderr.
QUIET_LOGGERS = ("pypandoc", "pdfminer", "pypdf", "unstructured")

_prepared = False
_lock = threading.Lock()

_VERBS = frozenset(
    """
    is are was were be been being am has have had having do does did done doing can could
    will would shall should may might must make makes made get gets got use uses used
    provide provides provided include includes included contain contains show shows shown
    describe describes allow allows allowed need needs run runs ran see sees saw give gives
    gave take takes took find finds found know knows knew say says said go goes went come
    comes came become becomes became want wants work works seem seems help helps set sets
    put puts keep keeps let lets begin begins began support supports require requires
    required create creates created return returns explain explains consider considers add
    adds added read reads write writes wrote written follow follows mean means means call
    calls called try tries tried look looks feel feels leave leaves left tell tells told ask
    asks turn turns start starts started change changes changed depend depends install
    installs installed configure configures configured
    """.split()
)
_VERB_SUFFIX = re.compile(r"^[a-z]{3,}(ed|ing|izes|ises|ates)$")


def _verb_tagger(doc: Any) -> Any:
    for token in doc:
        lower = token.lower_
        token.tag_ = "VB" if lower in _VERBS or _VERB_SUFFIX.match(lower) else "NN"
    return doc


def _rule_based_pipeline() -> Any:
    import spacy
    from spacy.language import Language

    if not Language.has_factory("sluice_verb_tagger"):
        Language.component("sluice_verb_tagger", func=_verb_tagger)
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("sluice_verb_tagger")
    return nlp


def prepare_unstructured() -> None:
    """Idempotent; call before the first `unstructured` import in every process that parses."""
    global _prepared
    with _lock:
        if _prepared:
            return
        os.environ["DO_NOT_TRACK"] = "1"
        os.environ["SCARF_NO_ANALYTICS"] = "true"
        os.environ["UNSTRUCTURED_DISABLE_NOTICE"] = "1"
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        import spacy.util
        from unstructured.nlp import tokenize

        if not spacy.util.is_package(tokenize._SPACY_MODEL_NAME):
            nlp = _rule_based_pipeline()
            tokenize._get_nlp = lambda: nlp  # type: ignore[assignment]
        _prepared = True
