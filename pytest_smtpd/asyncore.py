"""Drop-in for the one ``asyncore`` call smtpd code makes: ``asyncore.loop()``."""

from .compat import loop

__all__ = ["loop"]
