"""Behaviour ported code relies on: the original's live feature set, its exceptions, its
lenient queries, its override hooks, and consistent numbers (dead counts, float32 values)
— each checked against what the original did or against brute force."""

import contextlib
import os
import signal
import threading
import time

import numpy as np
import pytest
from conftest import Reference, assert_same, build, random_corpus

from feature_dictionary import extraction
from feature_dictionary import (
    CallInterrupted,
    ExtractionConfig,
    Feature,
    FeatureActivation,
    FeatureAnalyzer,
    FeatureDictionary,
    FeatureExtractor,
    FeatureLabeler,
    FeatureSet,
    FeatureType,
)


def test_an_interrupt_during_a_call_surfaces_after_it_with_every_state_consistent():
    acts, tokens = random_corpus(seed=5, n_features=48)
    clean = build(acts, tokens)
    clean.finalize()
    d = FeatureDictionary(48, 16)
    d.config.extraction.include_dead_features = True
    d.extractor.config.include_dead_features = True
    sent = []

    def interrupt_once(_activation):
        # Runs inside the call, after the engine took the data and before the call ends: the
        # moment where an interrupt used to leave the co-activation sums behind the engine.
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    d.extractor.add_callback(interrupt_once)
    with pytest.raises(KeyboardInterrupt, match="processed in full"):
        d.process_batch(acts, tokens)
    assert sent and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    d.extractor._callbacks.clear()
    d.finalize()
    assert d.extractor.total_tokens == clean.extractor.total_tokens
    np.testing.assert_array_equal(d.extractor._coact, clean.extractor._coact)
    for fid in (0, 7, 31):
        assert d.get_correlated(fid, 0.0) == clean.get_correlated(fid, 0.0)


def _stop_at_check(n):
    """Stands in for the Ctrl-C check: asks the engine to stop at its ``n``-th check."""

    @contextlib.contextmanager
    def interrupt(_n_sequences):
        asked = []
        yield lambda: asked.append(1) or len(asked) >= n

    return interrupt


@pytest.mark.parametrize("as_list", [False, True])
def test_a_call_stopped_between_batches_holds_exactly_the_sequences_before_the_stop(monkeypatch, as_list):
    acts, tokens = random_corpus(seed=8, n_seq=10, n_features=48)
    d = FeatureDictionary(48, 16)
    d.config.extraction.include_dead_features = True
    d.extractor.config.include_dead_features = True
    d.extractor._engine.values_per_batch = 2 * 40 * 48  # two sequences per engine batch
    monkeypatch.setattr(extraction, "_interrupt_between_batches", _stop_at_check(2))
    with pytest.raises(CallInterrupted, match="first 4 of the 10 sequences") as stopped:
        d.process_batch(list(acts) if as_list else acts, tokens)
    assert isinstance(stopped.value, KeyboardInterrupt)
    assert (stopped.value.sequences_done, stopped.value.sequences_total) == (4, 10)
    # Every state holds the four sequences: as a build over them alone.
    prefix = build(acts[:4], tokens[:4])
    assert d.extractor.total_tokens == prefix.extractor.total_tokens == 4 * 40
    np.testing.assert_array_equal(d.extractor._coact, prefix.extractor._coact)
    d.finalize()
    prefix.finalize()
    for fid in (0, 7, 31):
        assert d.get_feature(fid).to_dict() == prefix.get_feature(fid).to_dict()
    # Passing the rest completes it: as one build over all ten.
    monkeypatch.undo()
    d.process_batch(acts[4:], tokens[4:])
    whole = build(acts, tokens)
    d.finalize()
    whole.finalize()
    # (the co-activation sums of two calls add in another order: equal to rounding)
    np.testing.assert_allclose(d.extractor._coact, whole.extractor._coact, rtol=1e-13)
    for fid in range(48):
        assert_same(d.get_feature(fid).to_dict(), whole.get_feature(fid).to_dict(), rel=1e-13)


def test_ctrl_c_stops_a_long_call_at_its_next_batch():
    # A real SIGINT, sent from another thread while the engine runs: the call must stop
    # before its end and say how far it got. Where the signal lands is up to the scheduler,
    # so a try that sends it too early (before the call) or too late is made again, larger.
    for attempt in range(6):
        n_seq = 2000 << attempt
        acts, tokens = random_corpus(seed=9, n_seq=n_seq, seq_len=4, n_features=32)
        d = FeatureDictionary(32, 16)
        d.extractor._engine.values_per_batch = 4 * 32  # one sequence per engine batch
        go = threading.Event()

        def send():
            go.wait()
            time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGINT)

        sender = threading.Thread(target=send)
        sender.start()
        try:
            go.set()
            d.process_batch(acts, tokens)
        except CallInterrupted as e:
            stopped = e
            if e.sequences_done < n_seq:
                break
        except KeyboardInterrupt:
            pass
        finally:
            sender.join()
    else:
        pytest.fail("no SIGINT landed while the engine ran")
    done = stopped.sequences_done
    assert 0 < done < n_seq and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    prefix = FeatureDictionary(32, 16)
    prefix.process_batch(acts[:done], tokens[:done])
    assert d.extractor.total_tokens == prefix.extractor.total_tokens == done * 4
    np.testing.assert_array_equal(d.extractor._coact, prefix.extractor._coact)


def test_ctrl_c_reaches_long_engine_work_such_as_finalize():
    # finalize runs in the engine without the GIL; Ctrl-C used to wait for its end (minutes
    # at millions of features). The engine's waiting thread now runs the signal handlers
    # and stops the work: a wait of a minute ends at the interrupt.
    from feature_dictionary import _engine

    timer = threading.Timer(0.1, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        _engine._wait_for_interrupt(60.0)
    assert time.perf_counter() - started < 30
    timer.join()


def test_ctrl_c_stops_a_load_at_once(tmp_path):
    # A read that blocks (a FIFO nobody writes to yet) stands for a long one: Ctrl-C used
    # to wait for its end. The read is left to its own thread and dropped.
    fifo = tmp_path / "d.json"
    os.mkfifo(fifo)
    timer = threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        FeatureDictionary.load(fifo)
    assert time.perf_counter() - started < 10
    timer.join()
    # Lets the abandoned reader go: it reads an empty file, fails, and its thread ends.
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.parametrize("suffix", [".json", ".fdict"])
def test_ctrl_c_stops_a_save_and_keeps_the_previous_file(tmp_path, monkeypatch, suffix):
    # SIGINT lands 10 ms into the engine's write (after Python made the text); when the
    # write was done by then, it is made again with a larger dictionary.
    from feature_dictionary import dictionary as dictionary_module

    engine_save = dictionary_module._engine.save

    def save_then_interrupted(text, path, sources):
        threading.Timer(0.01, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        return engine_save(text, path, sources)

    monkeypatch.setattr(dictionary_module._engine, "save", save_then_interrupted)
    path = tmp_path / f"d{suffix}"
    for attempt in range(6):
        path.write_bytes(b"previous")
        acts, tokens = random_corpus(seed=3, n_seq=8, seq_len=64, n_features=256 << attempt,
                                     density=0.2)
        d = FeatureDictionary(256 << attempt, 16)
        d.process_batch(acts, tokens)
        d.finalize()
        returned, stopped = False, None
        try:
            d.save(path)
            returned = True
            time.sleep(0.2)  # the signal, had it not landed yet
        except KeyboardInterrupt as e:
            stopped = e
        if path.read_bytes() == b"previous":
            assert stopped is not None and not returned
            break
        # The file was replaced: the Ctrl-C came after the last look at the stop flag, and
        # when the engine rather than Python raised it, it says the save had finished.
        if stopped is not None and str(stopped):
            assert "had finished" in str(stopped), stopped
    else:
        pytest.fail("every save ended before Ctrl-C stopped it")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_one_extractor_used_from_two_threads_takes_every_call_in_turn():
    acts, tokens = random_corpus(seed=6, n_seq=24, n_features=48)
    ex = FeatureExtractor(48, 16, config=ExtractionConfig(include_dead_features=True))
    errors, reads = [], []

    def work(part):
        try:
            for i in range(part, 24, 2):
                ex.process_activations(acts[i], tokens[i])
                reads.append((ex.total_tokens, len(ex.features)))
        except Exception as e:  # noqa: BLE001 - any error fails the test below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(p,)) for p in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ex.total_tokens == acts.shape[0] * acts.shape[1]
    ref = Reference(acts, tokens)
    fs = ex.finalize()
    assert [fs[j].activation_count for j in range(48)] == [ref.count(j) for j in range(48)]
    assert len(reads) == 24 and all(n == 48 for _, n in reads)


def test_user_weights_on_features_survive_more_processing():
    acts, tokens = random_corpus(seed=7)
    ex = FeatureExtractor(acts.shape[2], 16, config=ExtractionConfig(include_dead_features=True))
    ex.process_batch(acts[:4], tokens[:4])
    fs = ex.features
    fs[2].decoder_weight = [1.0, 0.0]
    fs[2].bias = 0.5
    analyzer = FeatureAnalyzer(fs)
    ex.process_batch(acts[4:], tokens[4:])
    ex.finalize()
    assert ex.features is fs and fs[2].decoder_weight == [1.0, 0.0] and fs[2].bias == 0.5
    assert analyzer.get_summary()["total_tokens_processed"] == acts.shape[0] * acts.shape[1]


def test_dead_features_are_counted_alike_by_every_statistic():
    acts, tokens = random_corpus(seed=8, n_features=48)
    acts[:, :, [2, 3]] = 0.0  # never fire
    d = build(acts, tokens, include_dead_features=False)
    d.finalize()
    dead = d.analyzer.get_dead_features()
    assert dead == [2, 3] and 2 not in d.features.features
    stats = d.get_statistics()
    assert stats["dead_features"] == 2 and stats["type_distribution"]["dead"] == 2
    assert d.features.get_statistics()["dead_features"] == 2
    assert stats["total_features"] == 46


def test_a_hand_made_feature_is_not_dead_once_it_fired_and_summaries_reclassify():
    f = Feature(id=0, dimension=4)
    assert f.feature_type == FeatureType.DEAD
    for v in (1.0, 2.0, 3.0):
        f.add_activation(FeatureActivation(0, "x", 0, v))
    assert f.feature_type == FeatureType.SPARSE  # the original's default
    fs = FeatureSet(layer=0, total_tokens_processed=10)
    fs.add_feature(f)
    summary = FeatureAnalyzer(fs).get_summary()
    assert summary["type_distribution"]["dense"] == 1 and summary["dead_features"] == 0
    assert f.activation_frequency == pytest.approx(0.3)
    assert "fired on 3 tokens" in FeatureLabeler().generate_description(f)
    g = Feature(id=1, dimension=4)
    g.add_activation(FeatureActivation(1, "y", 0, 1.0))
    assert "fired on 1 token " in FeatureLabeler().generate_description(g)


def test_token_search_sees_features_added_and_examples_edited_after_the_first_search():
    acts, tokens = random_corpus(seed=9)
    d = build(acts, tokens)
    d.finalize()
    assert d.search_by_token("zzz") == []
    f = Feature(id=1000, dimension=16)
    f.add_activation(FeatureActivation(1000, "zzz", 0, 2.0))
    d.features.add_feature(f)
    assert d.search_by_token("zzz") == [(1000, 2.0)]
    target = next(g for g in d.features if g.top_activations and g.id != 1000)
    target.top_activations[0].token = "renamed"
    target.metadata.pop("top_tokens", None)
    hits = dict(d.search_by_token("renamed"))
    assert target.id in hits
    assert d.search_by_token(None) == []


def test_example_activations_are_the_input_float32_values_exactly():
    acts, tokens = random_corpus(seed=10)
    d = build(acts, tokens)
    d.finalize()
    for f in d.features:
        for a in f.top_activations:
            seq, pos = a.metadata["sequence"], a.position
            assert a.activation == float(acts[seq, pos, f.id])
        if f.top_activations:
            assert f.max_activation == f.top_activations[0].activation
            assert d.get_feature_stats(f.id).min_activation == float(
                acts[:, :, f.id][acts[:, :, f.id] >= np.float32(0.01)].min()
            )


def test_file_errors_are_the_oserror_subclasses_open_raises(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError) as e:
        FeatureDictionary.load(str(missing))
    assert e.value.filename == str(missing) and "nope.json" in str(e.value)
    with pytest.raises(IsADirectoryError):
        FeatureDictionary.load(str(tmp_path))
    acts, tokens = random_corpus(seed=11)
    d = build(acts, tokens)
    d.finalize()
    with pytest.raises(FileNotFoundError):
        d.save(str(tmp_path / "no-such-dir" / "d.json"))
    with pytest.raises(FileNotFoundError):
        d.features.save(str(tmp_path / "no-such-dir" / "fs.json"))


def test_lenient_queries_answer_as_the_original():
    acts, tokens = random_corpus(seed=12)
    d = build(acts, tokens)
    d.finalize()
    assert d.get_features_by_type("bogus") == []
    assert d.get_features_by_type("dead") == d.get_features_by_type(FeatureType.DEAD)
    assert d.analyzer.compare_features(0, 99_999) == {"error": "Feature not found"}


def test_the_originals_private_names_still_work():
    acts, tokens = random_corpus(seed=13)
    ex = FeatureExtractor(acts.shape[2], 16)
    ex.process_batch(acts, tokens)
    assert ex._total_tokens == ex.total_tokens == acts.shape[0] * acts.shape[1]
    assert ex._get_context_tokens(list("abcdefg"), 3, 2) == list("bcdef")
    assert ex._get_context_tokens(list("abc"), 0, 5) == list("abc")

    class NoCats(FeatureLabeler):
        def _label_by_token_frequency(self, feature):
            return [l for l in super()._label_by_token_frequency(feature) if l.text != "token:cat"]

    fs = ex.finalize()
    NoCats().label_features(fs)
    assert all("token:cat" not in f.labels for f in fs)


def test_correlations_stored_by_featdict_build_are_read_too(tmp_path):
    import json
    import warnings

    acts, tokens = random_corpus(seed=14, n_features=24)
    d = build(acts, tokens)
    d.finalize()
    assert d.features.metadata["correlation"] == {"mode": "exact", "measure": "pearson", "exact": True}
    want = d.get_correlated(0, 0.0)
    assert want
    path = tmp_path / "d.json"
    d.save(str(path))
    data = json.loads(path.read_text())
    # `featdict build --correlation exact` keeps the same [[partner, r], ...] under "correlated".
    for f in data["feature_set"]["features"].values():
        f["metadata"]["correlated"] = f["metadata"].pop("correlated_features")
    path.write_text(json.dumps(data))
    loaded = FeatureDictionary.load(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to the Jaccard estimate
        got = loaded.get_correlated(0, 0.0)
    assert [j for j, _ in got] == [j for j, _ in want][: len(got)] and got
