"""The development front ends: the chat page (``ui.web``, static files in ``ui/static``) and the terminal chat
(``python -m ui.chat``).

Both are clients of ``POST /invocations`` and nothing else: they import no layer below ``agent.py``, so what
they show is what any HTTP client gets.
"""
