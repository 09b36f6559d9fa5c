"""The merge of adjacent deltas on model events: the definition ``relayed.grpc_events``
implements on the way to protobuf, kept here as the tests' oracle for what a caller that fell
behind receives."""

from __future__ import annotations

from sidecar import model as m

_MERGEABLE = (m.TextDelta, m.InputJsonDelta, m.ThinkingDelta)


def _join(deltas: list[m.BlockDelta]) -> m.BlockDelta:
    first = deltas[0]
    if len(deltas) == 1:
        return first
    if isinstance(first, m.TextDelta):
        return m.TextDelta(text="".join(d.text for d in deltas))  # type: ignore[union-attr]
    if isinstance(first, m.InputJsonDelta):
        return m.InputJsonDelta(partial_json="".join(d.partial_json for d in deltas))  # type: ignore[union-attr]
    return m.ThinkingDelta(thinking="".join(d.thinking for d in deltas))  # type: ignore[union-attr]


def coalesce(events: list[m.StreamEvent]) -> list[m.StreamEvent]:
    """Join runs of adjacent text / input_json / thinking deltas of the same block."""
    if len(events) < 2:
        return events
    out: list[m.StreamEvent] = []
    run: list[m.BlockDelta] = []
    run_index = -1

    def flush() -> None:
        if run:
            out.append(m.ContentBlockDelta(index=run_index, delta=_join(run)))
            run.clear()

    for event in events:
        if isinstance(event, m.ContentBlockDelta) and isinstance(event.delta, _MERGEABLE):
            if run and (event.index != run_index or type(event.delta) is not type(run[0])):
                flush()
            run_index = event.index
            run.append(event.delta)
        else:
            flush()
            out.append(event)
    flush()
    return out
