"""The explanatory text of the results page: why each number is what it is, and for a
missed target, by how much, why, and what would close it.  Placeholders in braces are
filled from the results (see report._note_vars)."""

NOTES: dict[str, str] = {
    "competitors": (
        "Clients compared, each configured the way a careful user would, with the same "
        "attempt budget (6 attempts) wherever it retries:\n\n"
        "- **raw requests.Session**: one session per thread, keys round-robin, no retries — "
        "the physical limit of this machine and the simulator.\n"
        "- **requests + tenacity**: the same plus `@retry(wait=wait_random_exponential("
        "multiplier=0.5, max=30), stop=stop_after_attempt(6))` on 429, 5xx and connection "
        "errors (full jitter); each attempt takes the next key.\n"
        "- **openai SDK**: the official client's built-in retries (`max_retries=5`: "
        "exponential backoff from 0.5 s with jitter, honouring `retry-after-ms`/`retry-after`), "
        "`base_url` the simulator, one client per key, rotated round-robin.\n"
        "- **LiteLLM Router**: one deployment per key (`model_list` with `api_base` the "
        "simulator's `/openai/v1` and `api_key` per deployment, `rpm` given where the scenario "
        "has a limit), `routing_strategy=\"simple-shuffle\"`, `num_retries=5`, its default "
        "cooldowns; run with `LITELLM_LOCAL_MODEL_COST_MAP=True` so it makes no network call "
        "of its own.\n"
        "- **ipfs-accelerate**: `Client` with the plugins a user of this workload installs — "
        "the OpenAI backend and the least-loaded key strategy (the other backends, the "
        "Prometheus exporter and the Redis store installed in the development environment "
        "are not loaded) — configured per scenario as noted below (everything else "
        "default: `RetryPolicy()`, 6 attempts, full jitter)."),
    "overhead": (
        "Every client spends its time in the same place: building, sending and parsing HTTP "
        "on one Python process with the GIL. The pipeline adds a queue hand-off, key "
        "selection, limiter and breaker checks and stats per request; `Client.call` runs "
        "the first attempt on the caller's thread when a slot is free, so there is no "
        "thread hand-off on the fast path. The openai SDK (httpx, pydantic models) and "
        "LiteLLM (its own request/response mapping, logging and callbacks on every call) "
        "spend more CPU per request, which on 2 cores is throughput."),
    "goodput": (
        "Without a limiter, a client discovers the quota by being refused: raw loses every "
        "refused request; tenacity and the SDKs retry blindly after a jittered wait, so they "
        "draw hundreds of 429s and finish late (or give up after 6 attempts and lose the "
        "request). The openai SDK honours the server's `retry-after-ms`, but 50 threads "
        "that were refused together come back together, so most of its 6 attempts are "
        "refused again. LiteLLM's Router puts a deployment on cooldown after a 429; with "
        "all three cooling down it fails requests at once with `RouterRateLimitError` "
        "(no deployments available) without calling the server — fewer 429s, most "
        "requests lost. The pipeline paces each key to its quota before sending, so "
        "almost nothing is refused."),
    "outage": (
        "Raw loses every request that arrives during the outage. Retrying clients keep "
        "calling the dead service (every waiting request retries on its own schedule) and "
        "lose the requests whose 6 attempts all fell into the outage. The pipeline's "
        "breaker opens after a few failures; its requests wait in the queue without "
        "spending attempts, one probe goes out per open interval, and when a probe succeeds "
        "the backlog drains."),
    "priority": (
        "With c requests in flight and service time s, a late HIGH request waits for at "
        "most one slot to free plus the HIGH requests ahead of it: the p50 of 10 is about "
        "(10/(2c) + 1) s, against (200/(2c)) s for the p50 of the backlog; the expected "
        "ratio at c = 2 is 3.5/50 = 7 %."),
    "flaky": (
        "Any client that retries 5xx keeps every request here; the difference is in how "
        "many calls it makes for them (about 1/0.95 = 1.05 attempts per request is the "
        "floor) and how long the unlucky ones wait."),
    "scale": (
        "The pipeline keeps every submitted request as a queue entry with its future until "
        "it is done, so memory grows with the requests handed over at once; a thread pool's "
        "work items are smaller. CPU per request is the whole client process (HTTP, JSON, "
        "and for the pipeline its bookkeeping)."),
    "sizes": (
        "Counts are those the issue asks for; medians of {runs} runs. The scale scenario runs "
        "once per client (in a fresh process each), not 3 times, to keep the whole run "
        "under ~15 minutes on this 2-core machine; its numbers are per request over 10,000 "
        "requests."),
    # Per target: text when met, text when missed (why, and what would close it).
    "overhead.met": (
        "Met: {overhead_ratio}x raw throughput (single rounds {overhead_range}). The client "
        "process is CPU-bound here (16 threads, one GIL), so throughput follows CPU per "
        "request: {overhead_cpu_ours} ms for the pipeline against {overhead_cpu_raw} ms for "
        "a bare `Session.post`. The pipeline can beat a bare session because its transport "
        "reads the environment's proxy settings once per origin (core commit 2f32a33), "
        "while `requests.Session.request` re-reads them on every call; an earlier run "
        "today, on the core before that change, measured 0.69x."),
    "overhead.missed": (
        "Missed by {overhead_short}: {overhead_ratio}x raw (single rounds "
        "{overhead_range}). **Why:** with no latency and no limits the client process is "
        "CPU-bound (16 threads, one GIL), so throughput follows the client's CPU per "
        "request: {overhead_cpu_ours} ms for the pipeline against {overhead_cpu_raw} ms "
        "for a bare `Session.post` (raw/ours = {overhead_cpu_ratio}); on this shared "
        "machine single rounds also swing with the other work running. The pipeline's own "
        "part per request is the queue entry and future, limiter, key selection, breaker, "
        "stats and `Result` parsing. **What would close it:** trimming the fast path of "
        "`Client.call` (one lock round trip for pick + release, fewer wake-ups of idle "
        "workers when the caller runs the request itself); the target needs the "
        "pipeline's extra work under ~10 % of a request's CPU (about 0.15 ms here). The "
        "transport already reads the environment's proxy settings once per origin (core "
        "commit 2f32a33); before that change the same scenario measured 0.69x."),
    "goodput.met": (
        "Met: {goodput_ratio}x the ideal time with {goodput_429} 429s and nothing lost: "
        "each key is paced to its quota before a request is sent. An earlier run today, on "
        "the core before commit 8e29cbb, measured 1.21x: when the simulator reported "
        "`x-ratelimit-remaining-requests: 0`, the limiter cooled the key down for the whole "
        "`x-ratelimit-reset-requests` — the time until the burst is *full* again (0.3 s "
        "here) — instead of one refill step (0.1 s); the limiter now waits one step."),
    "goodput.missed": (
        "Missed by {goodput_over}: wall {goodput_wall} s against the ideal "
        "{goodput_ideal} s, {goodput_429} 429s. **Why:** the pipeline paces each key at "
        "exactly its configured 10 requests/s, so the wall time exceeds the ideal only "
        "when a key idles: a cooldown after an answer that reported no requests left "
        "(before core commit 8e29cbb the limiter waited for the whole "
        "`x-ratelimit-reset-requests`, i.e. until the burst was full again, which measured "
        "1.19-1.21x here; it now waits one refill step), a 429 (each costs its "
        "`retry-after`), or a client process too busy to dispatch on time. **What would "
        "close it:** `client.stats()` shows the 429s and per-key cooldowns of the run; "
        "with none, the lateness is dispatch delay on a loaded machine."),
    "outage.met": (
        "Met: {outage}. Nothing is lost because requests wait in the queue while the "
        "breaker is open instead of spending attempts; the probe rate is one per "
        "`open_interval` (0.7 s), and the first success comes with the first probe after "
        "the service is back (at most 0.7 s plus a round trip)."),
    "outage.missed": (
        "Missed: {outage}. Nothing was lost and the first success came well within 1 s, "
        "but counting every call the simulator received between the breaker's open and "
        "close events gives more than 2 calls/s. **Why:** of the 6-8 such calls per run, "
        "3 are the half-open probes (one per `open_interval` of 0.7 s, about 1 call/s: "
        "over the outage after its first 0.5 s every run made 1.2 calls/s); the others "
        "reach the simulator just after the breaker opened — the first half second of "
        "the outage holds 8-11 calls in every run, the remaining 2.5 s only the probes. "
        "They are requests a worker had already taken for dispatch while the breaker was "
        "still closed, sent a moment after another worker's failure tripped it. **What "
        "would close it:** check `breaker.can_dispatch(now)` again right before a request "
        "goes on the wire (in `Pipeline.run`, `core/src/ipfs_accelerate_py/pipeline/__init__.py`) "
        "and put it back in the queue, without spending an attempt, when the breaker "
        "opened meanwhile; or trip the breaker sooner (a smaller `minimum_calls`) so fewer "
        "requests are in flight when it opens."),
    "priority.met": "Met: the late HIGH requests' p50 is {prio_ratio} of the backlog's.",
    "priority.missed": (
        "Missed: {prio_ratio}. A HIGH request still waits for a slot to free (up to one "
        "service time) and for the HIGH requests ahead of it; on a loaded machine the "
        "service time grows for both, but the ratio should stay near 7 %. A miss here "
        "means dispatch picked NORMAL requests while HIGH ones waited: look at the "
        "queue's pop order in `core/src/ipfs_accelerate_py/queue.py`."),
    "flaky.met": (
        "Met: every request succeeded, with about 1.05 attempts per request — only the "
        "injected 500s were retried."),
    "flaky.missed": (
        "Missed: {flaky}. A request is lost here only when all 6 attempts draw a 500 "
        "(p = 0.05^6) or the retry budget (20 % of recent requests + 1/s) throttles retries "
        "past the deadline; raising `RetryPolicy.budget_ratio` would close it."),
}
