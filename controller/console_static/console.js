// fleetconf console: one page over the controller's JSON API.
//
// The token the operator types is kept in this tab's sessionStorage and sent as a Bearer
// token; the page holds no authority of its own. Every value from the API is rendered as
// text (textContent, DOM nodes), never parsed as HTML. The visible view is refreshed by
// polling the API (only while the tab is visible); lists are read one page at a time.

const TOKEN_KEY = "fleetconf.console.token";
const POLL_MS = 1500;
const AGENTS_PAGE = 100;
const HISTORY_PAGE = 20;
const AUDIT_PAGE = 50;
const LAGGARDS_SHOWN = 10;
const MAX_DIFF_CELLS = 4000000;
const NOTICE_MS = 6000;
const VERSION_CACHE_SIZE = 50;
const VIEWS = ["fleet", "history", "agents", "audit"];

const state = {
  caller: null, // {name, role} from GET /whoami
  view: "fleet",
  history: { offset: 0, a: null, b: null, newest: null },
  agents: { offset: 0, state: "", label: "" },
  audit: { offset: 0 },
  timer: null,
  busy: false,
  again: false,
};

// ---------------------------------------------------------------- DOM helpers

const $ = (id) => document.getElementById(id);

// An element with attributes and children; strings become text nodes, never markup.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "onclick") node.addEventListener("click", value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

function text(value) {
  return value === null || value === undefined ? "—" : String(value);
}

function isAdmin() {
  return state.caller !== null && state.caller.role === "admin";
}

function ago(iso) {
  if (!iso) return "never";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

function when(iso) {
  return el("time", { datetime: iso, title: iso }, ago(iso));
}

function badge(value, kind = value) {
  return el("span", { class: `badge ${kind}` }, value);
}

function seconds(value) {
  return value === null || value === undefined ? "—" : `${Number(value).toFixed(2)} s`;
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, detail, { stale = false } = {}) {
    super(detail);
    this.status = status;
    this.stale = stale;
  }
}

async function api(path, { method = "GET", body, headers = {} } = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const init = { method, headers: { ...headers }, cache: "no-store", credentials: "omit" };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  // Signed out (or in as someone else) meanwhile: this answer is not for the page now.
  if (sessionStorage.getItem(TOKEN_KEY) !== token) {
    throw new ApiError(0, "the token changed", { stale: true });
  }
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") && response.status !== 204 ? await response.json() : null;
  if (!response.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : response.statusText;
    throw new ApiError(response.status, detail);
  }
  return data;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined) search.set(name, String(value));
  }
  const string = search.toString();
  return string ? `?${string}` : "";
}

// ---------------------------------------------------------------- signing in

// An error (kept until a refresh succeeds) or a notice (kept a few seconds).
function showBanner(message) {
  const banner = $("banner");
  if (!message && banner.classList.contains("notice")) return;
  banner.classList.remove("notice");
  banner.textContent = message || "";
  banner.hidden = !message;
}

// What the previous token was shown goes with it: its data, its buttons, its filters.
const DATA_NODES =
  "#app .card > .body, #history-table, #history-pager, #agents-table, #agents-pager, " +
  "#audit-verify, #audit-table, #audit-pager";

function forgetShown() {
  for (const node of document.querySelectorAll(DATA_NODES)) node.replaceChildren();
  versionCache.clear();
  state.history = { offset: 0, a: null, b: null, newest: null };
  state.agents = { offset: 0, state: "", label: "" };
  state.audit = { offset: 0 };
  $("agent-state").value = "";
  $("agent-label").value = "";
}

function showLogin(message) {
  stopPolling();
  state.caller = null;
  forgetShown();
  $("app").hidden = true;
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  fill($("who"));
  $("login").hidden = false;
  const error = $("login-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("token").value = "";
  $("token").focus();
}

async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    state.caller = await api("/whoami");
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    const why =
      error.status === 401
        ? "This token is not valid here."
        : error.status === 403
          ? "This token is neither an admin's nor a viewer's."
          : `Signing in failed: ${error.message}`;
    showLogin(why);
    return;
  }
  $("login").hidden = true;
  $("login-error").hidden = true;
  $("app").hidden = false;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  document.body.dataset.role = state.caller.role;
  fill($("who"), state.caller.name, " ", badge(state.caller.role));
  showView(viewFromHash());
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  delete document.body.dataset.role;
  showLogin("");
}

// ---------------------------------------------------------------- views and polling

function viewFromHash() {
  const name = location.hash.replace("#", "");
  return VIEWS.includes(name) ? name : "fleet";
}

function showView(name) {
  state.view = name;
  for (const view of VIEWS) $(`view-${view}`).hidden = view !== name;
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.view === name);
  }
  refreshNow();
}

function stopPolling() {
  if (state.timer !== null) clearTimeout(state.timer);
  state.timer = null;
}

// Refresh the visible view now, then every POLL_MS; a call during a refresh makes the
// next one start as soon as it ends.
async function refreshNow() {
  if (state.caller === null) return;
  if (document.hidden) {
    // A tab nobody looks at asks nothing; it refreshes when shown again.
    stopPolling();
    return;
  }
  if (state.busy) {
    state.again = true;
    return;
  }
  stopPolling();
  state.busy = true;
  state.again = false;
  try {
    await RENDERERS[state.view]();
    showBanner("");
  } catch (error) {
    if (error.stale) {
      // Answered for a token no longer in use: nothing to show.
    } else if (error.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      state.busy = false;
      showLogin("The token was refused (revoked or expired): sign in again.");
      return;
    } else {
      showBanner(`Could not refresh: ${error.message}`);
    }
  } finally {
    state.busy = false;
  }
  if (state.caller === null) return;
  stopPolling();
  state.timer = setTimeout(refreshNow, state.again ? 0 : POLL_MS);
}

// ---------------------------------------------------------------- fleet view

async function renderFleet() {
  const fleet = await api("/fleet");
  const current = fleet.current_version;
  const [version, rollout, rollouts] = await Promise.all([
    api(`/config/versions/${current}`),
    api(`/config/versions/${current}/rollout${query({ limit: LAGGARDS_SHOWN })}`),
    readRollouts(),
  ]);
  renderCurrent(version);
  renderSummary(fleet);
  renderConvergence(rollout);
  renderRollout(rollouts);
}

function renderCurrent(version) {
  const rows = [
    ["Version", el("strong", { class: "version" }, `v${version.version}`)],
    ["Published", when(version.created_at)],
    ["By", text(version.created_by)],
    ["Why", version.comment ? el("q", {}, version.comment) : "—"],
    ["Configuration", el("code", {}, JSON.stringify(version.config))],
  ];
  if (version.rolled_back_to !== null && version.rolled_back_to !== undefined) {
    rows.splice(1, 0, ["Rolled back to", `v${version.rolled_back_to}`]);
  }
  fill($("current").querySelector(".body"), definitions(rows));
}

function definitions(rows) {
  return el("dl", {}, rows.map(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

function renderSummary(fleet) {
  const percent = `${Math.round(fleet.converged_fraction * 1000) / 10} %`;
  fill(
    $("summary").querySelector(".body"),
    el("p", { class: "big" }, percent, el("span", { class: "unit" }, " in sync")),
    el(
      "ul",
      { class: "counts" },
      ["agents", "in_sync", "behind", "drift", "stale", "ahead"].map((key) =>
        el("li", { class: key }, el("span", {}, key.replace("_", " ")), el("b", {}, text(fleet[key]))),
      ),
    ),
  );
}

function renderConvergence(rollout) {
  const parts = ["applied", "pending", "failed", "stale"];
  const total = Math.max(1, parts.reduce((sum, part) => sum + rollout[part], 0));
  const bar = el("div", { class: "stack", role: "img", "aria-label": "convergence" });
  for (const part of parts) {
    const segment = el("span", { class: part, title: `${part}: ${rollout[part]}` });
    segment.style.width = `${(100 * rollout[part]) / total}%`;
    bar.append(segment);
  }
  const status = rollout.complete ? badge("complete", "in_sync") : badge("converging", "behind");
  fill(
    $("convergence").querySelector(".body"),
    el("p", {}, `Version v${rollout.version}: `, status),
    bar,
    el(
      "ul",
      { class: "counts" },
      parts.map((part) => el("li", { class: part }, el("span", {}, part), el("b", {}, rollout[part]))),
    ),
    el("h3", {}, "Publish → confirmed"),
    histogram(rollout.histogram || []),
    el("p", { class: "hint" }, `p50 ${seconds(rollout.p50_seconds)}, p99 ${seconds(rollout.p99_seconds)}`),
    laggards(rollout.laggards),
  );
}

function histogram(buckets) {
  const most = Math.max(1, ...buckets.map((bucket) => bucket.agents));
  const chart = el("div", { class: "histogram" });
  for (const bucket of buckets) {
    const label = bucket.le_seconds === null ? "more" : `≤${bucket.le_seconds}s`;
    const bar = el("span", { class: "fill" });
    bar.style.height = `${(100 * bucket.agents) / most}%`;
    chart.append(
      el(
        "div",
        { class: "bucket", title: `${label}: ${bucket.agents} agents` },
        el("span", { class: "count" }, bucket.agents || ""),
        el("span", { class: "column" }, bar),
        el("span", { class: "label" }, label),
      ),
    );
  }
  return chart;
}

function laggards(page) {
  if (!page || page.total === 0) return el("p", { class: "hint" }, "No laggards.");
  return [
    el("h3", {}, `Laggards (${page.total})`),
    table(
      ["Agent", "State", "Holds", "Failed", "Last seen"],
      page.items.map((item) => [
        item.hostname,
        badge(item.state),
        item.applied_version === null ? "—" : `v${item.applied_version}`,
        item.apply_failed_version === null ? "—" : `v${item.apply_failed_version} (${item.apply_failed_reason})`,
        when(item.last_seen_at),
      ]),
    ),
  ];
}

// ---------------------------------------------------------------- staged rollouts

const ACTIVE_ROLLOUT = ["running", "paused"];

// The newest rollouts (GET /rollouts, newest first); none where the endpoint is absent.
async function readRollouts(limit = 5) {
  try {
    const body = await api(`/rollouts${query({ limit })}`);
    return Array.isArray(body && body.items) ? body.items : [];
  } catch (error) {
    if (error.status === 404 || error.status === 405) return [];
    throw error;
  }
}

function activeRollout(rollouts) {
  return rollouts.find((r) => ACTIVE_ROLLOUT.includes(r.state)) || null;
}

function renderRollout(rollouts) {
  const target = $("rollout").querySelector(".body");
  const active = activeRollout(rollouts);
  if (!active) {
    const last = rollouts[0];
    fill(
      target,
      el("p", { class: "hint", id: "no-rollout" }, "No rollout running."),
      last ? el("p", { class: "hint" }, "Last: ", rolloutLine(last)) : null,
    );
    return;
  }
  const steps = Array.isArray(active.steps) ? active.steps : [];
  fill(
    target,
    el("p", { id: "rollout-state" }, rolloutLine(active)),
    steps.length ? rolloutSteps(active, steps) : null,
    rolloutHealth(active),
    isAdmin() ? rolloutActions(active) : null,
  );
}

function rolloutLine(rollout) {
  const steps = Array.isArray(rollout.steps) ? rollout.steps.length : "?";
  return [
    `Rollout ${text(rollout.id).slice(0, 8)} of v${text(rollout.version)}`,
    rollout.baseline_version !== undefined ? ` (baseline v${text(rollout.baseline_version)})` : "",
    " ",
    badge(text(rollout.state), `rollout-${rollout.state}`),
    ` step ${text(rollout.step)} of ${steps} (${text(rollout.percent)} %)`,
    rollout.reason ? el("span", { class: "hint" }, ` — ${rollout.reason}`) : null,
  ];
}

function rolloutSteps(rollout, steps) {
  const cohorts = new Map((rollout.cohorts || []).map((c) => [c.step, c]));
  return table(
    ["Step", "Percent", "Cohort", "Applied", ""],
    steps.map((percent, index) => {
      const number = index + 1;
      const cohort = cohorts.get(number);
      const where = number < rollout.step ? "done" : number === rollout.step ? "now" : "next";
      return [
        String(number),
        `${text(percent)} %`,
        cohort ? text(cohort.cohort_size) : "—",
        cohort ? `${text(cohort.applied)} / ${text(cohort.cohort_size)}` : "—",
        badge(where, `step-${where}`),
      ];
    }),
    "rollout-steps",
  );
}

function rate(value) {
  return value === null || value === undefined ? "—" : `${(100 * value).toFixed(2)} %`;
}

function rolloutHealth(rollout) {
  const health = rollout.health;
  if (!health || typeof health !== "object") return null;
  const limit = `at most ${rate(rollout.max_error_rate)} over at least ${text(rollout.min_requests)} requests`;
  const rows = ["candidate", "baseline"].map((side) => {
    const h = health[side] || {};
    return [side, text(h.requests), text(h.errors), rate(h.error_rate)];
  });
  return [
    el("h3", {}, `Cohort health since the step began (bake ${text(rollout.bake_seconds)} s; ${limit})`),
    table(["", "Requests", "Errors", "Error rate"], rows, "rollout-health"),
  ];
}

function rolloutActions(rollout) {
  const post = (action) => async (comment) => {
    const headers = comment ? { "X-Change-Comment": comment } : {};
    const path = `/rollouts/${encodeURIComponent(rollout.id)}/${action}`;
    try {
      await api(path, { method: "POST", headers });
    } catch (error) {
      showBanner(`Could not ${action} the rollout: ${error.message}`);
    }
    refreshNow();
  };
  const abort = () =>
    confirmAction({
      title: `Abort the rollout of version ${rollout.version}?`,
      text:
        `Every agent gets a new version with version ${rollout.baseline_version}'s ` +
        `configuration; version ${rollout.version} goes no further.`,
      button: `Abort the rollout of version ${rollout.version}`,
      run: (comment) => post("abort")(comment),
    });
  return el(
    "div",
    { class: "actions" },
    rollout.state === "running"
      ? el("button", { type: "button", class: "pause", onclick: () => post("pause")("") }, "Pause")
      : null,
    rollout.state === "paused"
      ? el("button", { type: "button", class: "resume", onclick: () => post("resume")("") }, "Resume")
      : null,
    el("button", { type: "button", class: "danger abort", onclick: abort }, "Abort"),
  );
}

// ---------------------------------------------------------------- history and diff

async function renderHistory() {
  const h = state.history;
  const [page, rollouts] = await Promise.all([
    api(`/config/versions${query({ limit: HISTORY_PAGE, offset: h.offset })}`),
    isAdmin() ? readRollouts(1) : Promise.resolve([]),
  ]);
  const blocking = activeRollout(rollouts);
  if (h.newest === null && page.items.length) {
    h.b = page.items[0].version;
    h.a = page.items.length > 1 ? page.items[1].version : page.items[0].version;
  }
  h.newest = page.items.length ? page.items[0].version : null;
  const headings = ["A", "B", "Version", "Published", "By", "Why", "Configuration"];
  if (isAdmin()) headings.push("");
  const rows = page.items.map((v) => {
    const row = [
      picker("a", v.version),
      picker("b", v.version),
      [`v${v.version}`, v.current ? [" ", badge("current", "in_sync")] : null],
      when(v.created_at),
      text(v.created_by),
      [v.comment || "", v.rolled_back_to !== null ? ` (rollback to v${v.rolled_back_to})` : ""],
      el("code", {}, JSON.stringify(v.config)),
    ];
    if (isAdmin()) row.push(v.current ? "" : rollbackButton(v, blocking));
    return row;
  });
  fill($("history-table"), table(headings, rows, "history"));
  pager($("history-pager"), page, (offset) => {
    h.offset = offset;
    refreshNow();
  });
  await renderDiff();
}

function picker(side, version) {
  const input = el("input", {
    type: "radio",
    name: `diff-${side}`,
    value: version,
    "aria-label": `${side.toUpperCase()}: v${version}`,
    checked: state.history[side] === version,
  });
  input.addEventListener("change", () => {
    state.history[side] = version;
    refreshNow();
  });
  return input;
}

function rollbackButton(version, blocking) {
  return el(
    "button",
    {
      type: "button",
      class: "rollback",
      disabled: blocking !== null,
      title: blocking ? `The rollout of v${blocking.version} is in progress: finish or abort it first` : null,
      dataset: { version: version.version },
      onclick: () =>
        confirmAction({
          title: `Roll back to version ${version.version}?`,
          text:
            `A new version is published with version ${version.version}'s configuration ` +
            `(${JSON.stringify(version.config)}); every agent applies it.`,
          button: `Roll back to version ${version.version}`,
          run: (comment) => rollback(version.version, comment),
        }),
    },
    `Roll back to v${version.version}`,
  );
}

async function rollback(number, comment) {
  const headers = comment ? { "X-Change-Comment": comment } : {};
  try {
    const done = await api("/config/rollback", { method: "POST", body: { version: number }, headers });
    showBanner("");
    state.history.newest = null;
    state.history.offset = 0;
    setNotice(`Published v${done.version}, rolled back to v${done.rolled_back_to}.`);
  } catch (error) {
    showBanner(`Rollback refused: ${error.message}`);
  }
  refreshNow();
}

function setNotice(message) {
  const banner = $("banner");
  banner.textContent = message;
  banner.hidden = false;
  banner.classList.add("notice");
  setTimeout(() => {
    if (banner.textContent === message && banner.classList.contains("notice")) {
      banner.classList.remove("notice");
      banner.hidden = true;
    }
  }, NOTICE_MS);
}

// A version's configuration never changes: each is read once (the newest few are kept).
const versionCache = new Map();

async function readVersion(number) {
  if (!versionCache.has(number)) {
    versionCache.set(number, await api(`/config/versions/${number}`));
    if (versionCache.size > VERSION_CACHE_SIZE) versionCache.delete(versionCache.keys().next().value);
  }
  return versionCache.get(number);
}

async function renderDiff() {
  const { a, b } = state.history;
  const target = $("diff").querySelector(".body");
  if (a === null || b === null) {
    fill(target, el("p", { class: "hint" }, "Pick two versions."));
    return;
  }
  const [left, right] = await Promise.all([readVersion(a), readVersion(b)]);
  const rows = diffLines(pretty(left.config), pretty(right.config));
  const changed = rows.filter((row) => row.kind !== "same").length;
  const body = el("tbody");
  for (const row of rows) {
    body.append(
      el(
        "tr",
        { class: row.kind },
        el("td", { class: "num" }, row.left === null ? "" : row.leftNo),
        el("td", { class: "side left" }, row.left ?? ""),
        el("td", { class: "num" }, row.right === null ? "" : row.rightNo),
        el("td", { class: "side right" }, row.right ?? ""),
      ),
    );
  }
  fill(
    target,
    el("p", {}, `v${a} ↔ v${b}: `, changed ? `${changed} changed line(s)` : "identical"),
    el(
      "table",
      { class: "diff", id: "diff-table" },
      el("thead", {}, el("tr", {}, el("th", { colspan: 2 }, `A: v${a}`), el("th", { colspan: 2 }, `B: v${b}`))),
      body,
    ),
  );
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.keys(value).sort().map((key) => [key, sortKeys(value[key])]));
  }
  return value;
}

function pretty(config) {
  return JSON.stringify(sortKeys(config), null, 2).split("\n");
}

// Side by side rows from a longest-common-subsequence line diff; a removed line next to an
// added one is shown as one changed row.
function diffLines(left, right) {
  const ops = left.length * right.length > MAX_DIFF_CELLS ? positional(left, right) : lcs(left, right);
  const rows = [];
  let l = 0;
  let r = 0;
  for (let i = 0; i < ops.length; ) {
    if (ops[i] === "same") {
      rows.push({ kind: "same", left: left[l], right: right[r], leftNo: ++l, rightNo: ++r });
      i += 1;
      continue;
    }
    const removed = [];
    const added = [];
    while (i < ops.length && ops[i] !== "same") {
      if (ops[i] === "del") removed.push(l++);
      else added.push(r++);
      i += 1;
    }
    for (let k = 0; k < Math.max(removed.length, added.length); k += 1) {
      const a = k < removed.length ? removed[k] : null;
      const b = k < added.length ? added[k] : null;
      rows.push({
        kind: a !== null && b !== null ? "changed" : a !== null ? "removed" : "added",
        left: a === null ? null : left[a],
        right: b === null ? null : right[b],
        leftNo: a === null ? null : a + 1,
        rightNo: b === null ? null : b + 1,
      });
    }
  }
  return rows;
}

function lcs(left, right) {
  const n = left.length;
  const m = right.length;
  const table = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      table[i][j] = left[i] === right[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
    }
  }
  const ops = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (left[i] === right[j]) {
      ops.push("same");
      i += 1;
      j += 1;
    } else if (table[i + 1][j] >= table[i][j + 1]) {
      ops.push("del");
      i += 1;
    } else {
      ops.push("add");
      j += 1;
    }
  }
  while (i++ < n) ops.push("del");
  while (j++ < m) ops.push("add");
  return ops;
}

function positional(left, right) {
  const ops = [];
  for (let i = 0; i < Math.max(left.length, right.length); i += 1) {
    if (i < left.length && i < right.length && left[i] === right[i]) ops.push("same");
    else {
      if (i < left.length) ops.push("del");
      if (i < right.length) ops.push("add");
    }
  }
  return ops;
}

// ---------------------------------------------------------------- agents

async function renderAgents() {
  const f = state.agents;
  const page = await api(
    `/agents${query({ limit: AGENTS_PAGE, offset: f.offset, state: f.state, label: f.label })}`,
  );
  const rows = page.items.map((agent) => [
    el("span", { class: "hostname" }, agent.hostname),
    labelChips(agent.labels),
    badge(agent.state),
    agent.applied_version === null ? "—" : `v${agent.applied_version}`,
    agent.state === "drift"
      ? badge("drift")
      : agent.apply_failed_version !== null && agent.apply_failed_version !== undefined
        ? badge(`failed v${agent.apply_failed_version}: ${agent.apply_failed_reason}`, "failed")
        : "—",
    when(agent.last_seen_at),
  ]);
  fill(
    $("agents-table"),
    table(["Hostname", "Labels", "State", "Applied", "Drift / failure", "Last seen"], rows, "agents"),
  );
  pager($("agents-pager"), page, (offset) => {
    f.offset = offset;
    refreshNow();
  });
}

function labelChips(labels) {
  return el(
    "span",
    { class: "labels" },
    Object.entries(labels || {}).map(([key, value]) => el("span", { class: "label" }, `${key}=${value}`)),
  );
}

// ---------------------------------------------------------------- audit

async function renderAudit() {
  const a = state.audit;
  const [verify, page] = await Promise.all([
    api("/audit/verify"),
    api(`/audit${query({ limit: AUDIT_PAGE, offset: a.offset })}`),
  ]);
  fill(
    $("audit-verify"),
    verify.ok
      ? el("p", { class: "verified" }, badge("verified", "in_sync"), ` hash chain intact over ${verify.entries} entries`)
      : el(
          "p",
          { class: "broken" },
          badge("broken", "failed"),
          ` hash chain broken at entry ${text(verify.first_bad_seq)} (of ${verify.entries})`,
        ),
  );
  const rows = page.entries.map((entry) => [
    entry.seq,
    when(entry.at),
    entry.actor,
    entry.action,
    text(entry.target),
    el("code", {}, JSON.stringify(entry.detail)),
  ]);
  fill($("audit-table"), table(["#", "At", "Actor", "Action", "Target", "Detail"], rows, "audit"));
  pager($("audit-pager"), page, (offset) => {
    a.offset = offset;
    refreshNow();
  });
}

// ---------------------------------------------------------------- tables, pagers, dialog

function table(headings, rows, id) {
  return el(
    "table",
    { id: id ? `${id}-rows` : null },
    el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((cell) => el("td", {}, cell))))),
  );
}

function pager(target, page, go) {
  const first = page.total === 0 ? 0 : page.offset + 1;
  const last = Math.min(page.total, page.offset + page.limit);
  fill(
    target,
    el(
      "button",
      { type: "button", class: "prev", disabled: page.offset === 0, onclick: () => go(Math.max(0, page.offset - page.limit)) },
      "← Previous",
    ),
    el("span", { class: "range" }, `${first.toLocaleString("en")}–${last.toLocaleString("en")} of ${page.total.toLocaleString("en")}`),
    el(
      "button",
      { type: "button", class: "next", disabled: last >= page.total, onclick: () => go(page.offset + page.limit) },
      "Next →",
    ),
  );
}

let pendingAction = null;

function confirmAction({ title, text: body, button, run }) {
  pendingAction = run;
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = body;
  $("confirm-ok").textContent = button;
  $("confirm-comment").value = "";
  $("confirm").showModal();
}

async function confirmed() {
  const run = pendingAction;
  const comment = $("confirm-comment").value.trim();
  pendingAction = null;
  $("confirm").close();
  if (run) await run(comment);
}

const RENDERERS = {
  fleet: renderFleet,
  history: renderHistory,
  agents: renderAgents,
  audit: renderAudit,
};

// ---------------------------------------------------------------- start

function start() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (token) signIn(token);
  });
  $("sign-out").addEventListener("click", signOut);
  $("confirm-ok").addEventListener("click", confirmed);
  $("confirm-cancel").addEventListener("click", () => {
    pendingAction = null;
    $("confirm").close();
  });
  $("confirm").querySelector("form").addEventListener("submit", (event) => event.preventDefault());
  $("agent-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    state.agents.state = $("agent-state").value;
    state.agents.label = $("agent-label").value.trim();
    state.agents.offset = 0;
    refreshNow();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshNow();
  });
  window.addEventListener("hashchange", () => {
    if (state.caller !== null) showView(viewFromHash());
  });
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) signIn(token);
  else showLogin("");
}

start();
