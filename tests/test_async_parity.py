"""The pipeline behaviour suites, run again against the asyncio driver.

Each test below is the sync suite's own test function, re-run with ``Client`` replaced by
:class:`async_facade.AsyncBackedClient` (the ``Client`` interface over an ``AsyncClient``
on its own loop thread), over real HTTP to the same local servers: priorities, deadlines,
queue bounds, cancellation, retries and backoff, 429s and key rotation, rate limits, the
breaker, batching, streaming, hooks, observers and stats behave the same under both
drivers.  The sync runs stay in their own modules."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from async_facade import AsyncBackedClient  # noqa: E402


def _suite(module: str, names: list[str], fixtures: tuple[str, ...] = ()) -> dict[str, object]:
    # A private copy of the module, so patching its ``Client`` leaves the sync run alone.
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    copy.Client = AsyncBackedClient  # type: ignore[attr-defined]
    out = {f"{name}__async": getattr(copy, name) for name in names}
    out.update({name: getattr(copy, name) for name in fixtures})
    return out


globals().update(_suite("test_pipeline_basics", [
    "test_call_submit_and_map_keep_input_order",
    "test_request_id_is_sent_and_carried",
    "test_single_backend_is_the_default",
    "test_high_priority_overtakes_queued_normal_and_low",
    "test_full_queue_raises_or_blocks",
    "test_deadline_fails_a_request_stuck_in_the_queue",
    "test_cancelled_request_never_runs",
    "test_unknown_priority_and_operation_are_rejected_at_submit",
    "test_closed_client_refuses_new_work",
    "test_close_without_wait_fails_queued_requests_cleanly",
    "test_batching_coalesces_queued_singles_and_splits_results",
    "test_batch_count_mismatch_is_an_error_never_a_misassignment",
    "test_lone_batchable_request_waits_the_batch_window_in_the_queue",
    "test_batch_window_gathers_requests_into_one_call",
    "test_streaming_result",
    "test_stream_closed_early_releases_its_key",
    "test_stats_snapshot_and_reset",
    "test_request_id_header_can_be_turned_off",
]))
globals().update(_suite("test_pipeline_retry", [
    "test_retry_after_seconds_is_honoured_on_the_key",
    "test_retry_after_ms_wins_over_retry_after",
    "test_x_should_retry_false_stops_a_retryable_error",
    "test_x_should_retry_true_retries_a_client_error",
    "test_client_errors_are_not_retried",
    "test_server_errors_retry_until_max_attempts",
    "test_backoff_grows_exponentially",
    "test_a_retry_never_waits_past_the_deadline",
    "test_a_429_moves_work_to_another_key",
    "test_rejected_key_is_taken_out_of_rotation",
    "test_all_keys_rejected_fails_with_auth_error",
    "test_learned_limit_makes_requests_wait_instead_of_being_refused",
    "test_configured_rate_limit_is_never_exceeded",
    "test_rate_limited_error_is_final_after_attempts",
    "test_forbidden_is_not_a_bad_key",
    "test_a_redirect_is_an_error_not_a_result",
]))
globals().update(_suite("test_pipeline_breaker", [
    "test_breaker_opens_half_opens_and_closes",
    "test_outage_delays_work_and_loses_none",
    "test_429s_never_trip_the_breaker",
    "test_client_errors_never_trip_the_breaker",
    "test_fail_fast_is_an_option",
    "test_deadline_bounds_the_wait_for_an_open_breaker",
]))
globals().update(_suite("test_pipeline_hooks", [
    "test_monitoring_events_for_every_stage",
    "test_raising_strategy_fails_only_its_requests",
    "test_backoff_hook_can_replace_the_policy",
    "test_broken_monitor_does_not_lose_work",
    "test_custom_queue_factory_is_used",
    "test_events_carry_the_request_tags_model_and_result",
]))
globals().update(_suite("test_pipeline_extensions", [
    "test_two_clients_in_one_process_have_their_own_observers",
    "test_add_observer_after_construction",
    "test_a_raising_observer_is_logged_and_ignored",
    "test_the_client_closes_only_the_store_it_made",
]))
# The transport's bounds, over hostile real sockets: the deadline cuts a dripping body or
# an endless stream, size bounds (body, stream line), redirects, cut or corrupt bodies,
# network errors that chain nothing holding the key.
globals().update(_suite("test_hostile_servers", [
    "test_same_failure_every_time_ends_after_max_attempts_though_the_breaker_opens",
    "test_attempts_never_exceed_max_attempts_for_many_requests_in_an_outage",
    "test_a_body_that_drips_ends_at_the_deadline",
    "test_attempt_timeout_bounds_each_attempt_and_the_next_one_succeeds",
    "test_an_endless_stream_handed_to_the_caller_ends_at_the_deadline",
    "test_a_stream_that_never_sends_its_first_event_ends_at_the_deadline",
    "test_an_endless_body_is_refused_past_the_limit_and_not_retried",
    "test_an_endless_stream_line_is_refused",
    "test_a_redirect_fails_at_once_naming_the_location",
    "test_a_cut_or_corrupt_body_is_transient_and_retried",
    "test_a_body_cut_every_time_ends_in_connection_failed",
    "test_network_errors_chain_no_requests_exception",
], fixtures=("raw",)))
# Thread stress through the facade (64 threads submitting to one AsyncClient, an in-memory
# sync transport answering 503s and 429s): every request ends exactly once, none lost.
globals().update(_suite("test_pipeline_stress", ["test_64_threads_x_1000_submissions"]))
# The rate limiter learning each header style, over real HTTP to the simulator.
globals().update(_suite("test_rate_control", [
    "test_openai_headers_of_any_style_teach_rate_and_burst",
    "test_anthropic_headers_with_a_configured_rate_learn_the_burst",
]))
