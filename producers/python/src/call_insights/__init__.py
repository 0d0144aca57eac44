"""call-insights producers: report every LiveKit Agents or Pipecat call to the call-insights service.

``call_insights.livekit.CallInsights`` and ``call_insights.pipecat.CallInsightsObserver`` are the entry
points; :class:`~call_insights.report.CallReport` and :class:`~call_insights.publisher.Publisher` are the
framework-free parts they share (usable from any other agent).
"""

from .publisher import DEFAULT_STREAM, Pending, Publisher, PublisherStats, stream_for
from .report import AudioSegment, CallReport, ToolCall, Turn

__all__ = [
    "DEFAULT_STREAM",
    "AudioSegment",
    "CallReport",
    "Pending",
    "Publisher",
    "PublisherStats",
    "ToolCall",
    "Turn",
    "stream_for",
]
__version__ = "0.1.0"
