"""Test harness: a scripted fake LLM upstream (``server``), its control client (``client``) and
the child-process helpers behind the pytest fixtures (``processes``)."""
