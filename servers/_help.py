"""--help's one rule for defaults, shared by `python -m servers` and `concurbench`."""

from __future__ import annotations

import argparse


class DefaultsOnce(argparse.HelpFormatter):
    """Each flag's default, once: added as "(default: X)" unless the help already says it or
    there is none to tell (None, or an off switch), where ArgumentDefaultsHelpFormatter adds
    "(default: None)", or a second default after the one the help gives in words."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (not action.option_strings or action.default in (None, False, argparse.SUPPRESS)
                or "(default" in text or "default:" in text):
            return text
        return f"{text} (default: %(default)s)"
