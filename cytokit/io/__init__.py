"""Reading and writing FCS files: :func:`read_fcs` (AnnData), :func:`parse_fcs` (plain arrays), :func:`write_fcs`."""

from ._fcs import FCSFile, parse_fcs, read_fcs
from ._write import write_fcs

__all__ = ["FCSFile", "parse_fcs", "read_fcs", "write_fcs"]
