"""One recording key per recording even when ``prepare`` and the first segment ask at once (the
engagement prepares the key beside the connection, and the first packet may come as it starts)."""

from __future__ import annotations

import threading
from pathlib import Path

from recorder.crypto.keyring import DirectoryRecordingKeyStore, RecordingKeyring
from recorder.crypto.keys.base import DataKey, KeyContext
from recorder.crypto.keys.local import LocalKeyProvider
from recorder.sink import SegmentIdentity

#: How long the first key request waits for a second one to reach the key service. Only a
#: keyring that lets two requests for one recording through makes the second arrive; with
#: single flight the wait runs out and the test goes on.
SECOND_CALL_WAIT_S = 1.0


class SlowKeyService:
    """The local KEK behind a key service whose first call is slow (the window of the race)."""

    def __init__(self, inner: LocalKeyProvider) -> None:
        self.inner = inner
        self.calls = 0
        self.entered = threading.Event()
        self.second = threading.Event()
        self._lock = threading.Lock()

    def new_data_key(self, context: KeyContext) -> DataKey:
        with self._lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            self.entered.set()
            self.second.wait(SECOND_CALL_WAIT_S)
        else:
            self.second.set()
        return self.inner.new_data_key(context)

    @property
    def current_key_id(self) -> str:
        return self.inner.current_key_id

    def wrap_key(self, plaintext: bytes, context: KeyContext) -> DataKey:
        return self.inner.wrap_key(plaintext, context)

    def handles(self, key_id: str) -> bool:
        return self.inner.handles(key_id)

    def unwrap(self, wrapped: bytes, key_id: str, context: KeyContext) -> bytes:
        return self.inner.unwrap(wrapped, key_id, context)


def test_prepare_and_the_first_segment_share_one_recording_key(tmp_path: Path) -> None:
    service = SlowKeyService(LocalKeyProvider(tmp_path / "kek"))
    store = DirectoryRecordingKeyStore(tmp_path / "keys")
    keyring = RecordingKeyring(store, provider=service)
    prepared: list[str] = []
    segment_keys: list[str] = []

    preparing = threading.Thread(target=lambda: prepared.append(keyring.prepare("rec-1")))
    preparing.start()
    assert service.entered.wait(10)
    identity = SegmentIdentity("rec-1", "mixed", 0, 0)
    opening = threading.Thread(
        target=lambda: segment_keys.append(keyring.new_segment_key(identity).key_id)
    )
    opening.start()
    preparing.join(10)
    opening.join(10)

    assert service.calls == 1
    assert prepared == segment_keys
    assert [e.rk_id for e in store.entries()] == prepared
