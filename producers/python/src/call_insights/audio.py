"""PCM to the WAV the service stores: 16-bit, mono per party, 16 kHz by default. CPU-bound; the
publisher runs it in a worker thread, never on the call's event loop."""

from __future__ import annotations

import io
import wave

import numpy as np
import numpy.typing as npt

TARGET_RATE = 16_000


def to_mono_16k(
    pcm: bytes, sample_rate: int, channels: int = 1, channel: int | None = None
) -> npt.NDArray[np.int16]:
    """16-bit PCM (interleaved when ``channels`` > 1) as int16 samples at 16 kHz, one channel.

    ``channel`` picks one channel of a multi-channel buffer; ``None`` mixes them down.
    """
    if sample_rate <= 0 or channels <= 0:
        raise ValueError("sample_rate and channels must be positive")
    usable = len(pcm) - len(pcm) % (2 * channels)
    samples = np.frombuffer(pcm[:usable], dtype="<i2")
    mono: npt.NDArray[np.float32]
    if channels > 1:
        frames = samples.reshape(-1, channels)
        if channel is not None:
            mono = frames[:, channel].astype(np.float32)
        else:
            mono = frames.astype(np.float32).mean(axis=1)
    else:
        mono = samples.astype(np.float32)
    if sample_rate != TARGET_RATE and mono.size:
        n_out = max(1, round(mono.size * TARGET_RATE / sample_rate))
        # Linear interpolation after a box low-pass when decimating (enough for speech at 16 kHz).
        if sample_rate > TARGET_RATE:
            k = int(sample_rate // TARGET_RATE)
            if k > 1:
                kernel = np.ones(k, dtype=np.float32) / k
                mono = np.asarray(np.convolve(mono, kernel, mode="same"), dtype=np.float32)
        x_old = np.arange(mono.size, dtype=np.float64) / sample_rate
        x_new = np.arange(n_out, dtype=np.float64) / TARGET_RATE
        mono = np.asarray(np.interp(x_new, x_old, mono), dtype=np.float32)
    return np.clip(np.rint(mono), -32768, 32767).astype("<i2")


def wav_bytes(samples: npt.NDArray[np.int16], sample_rate: int = TARGET_RATE) -> bytes:
    """A RIFF/WAVE file of mono 16-bit samples."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def encode_wav(pcm: bytes, sample_rate: int, channels: int = 1, channel: int | None = None) -> bytes:
    """16-bit PCM at any rate and channel count → 16 kHz mono WAV."""
    return wav_bytes(to_mono_16k(pcm, sample_rate, channels, channel))
