"""Write a Strata feature extractor in Python.

Subclass :class:`Extractor`, declare its manifest as class attributes and
implement ``process_row`` (or ``process`` for whole columns)::

    from strata_sdk import Column, Extractor

    class Shout(Extractor):
        name = "shout"
        version = "0.1.0"
        description = "Upper-cases text"
        depends_on = ["text-extract"]
        inputs = ["text-extract.text"]
        outputs = [Column("loud", "Utf8", "the text, upper-cased")]

        def process_row(self, row):
            text = row["text-extract.text"]
            return {"loud": text.upper() if text is not None else None}

``strata_sdk.testing.run`` runs it natively for unit tests; the template in
``examples/extractor-template-python`` builds it as a component with
``componentize-py``. No Arrow library is needed: the component exchanges
columns with the host as WIT values (``columnar`` in
``wit/extractor.wit``).
"""

from .extractor import Column, Extractor, RowError
from .log import log
from .params import OpenError, Param, ParamError

__all__ = ["Column", "Extractor", "OpenError", "Param", "ParamError", "RowError", "log"]
