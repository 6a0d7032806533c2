// The dev chat page: one client of POST /invocations, no framework, no build step.
// Every text from the server or the user is put in the page with textContent, never as HTML.
"use strict";

const ID_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_-]*$/;
const $ = (id) => document.getElementById(id);

const state = {
  actor: "default_user",
  session: "",
  busy: false,           // a turn (or an action) of this session is in flight
  controller: null,      // aborts the streamed turn (Stop)
  nextCursor: null,      // list_sessions paging
  nextBefore: null,      // get_history paging
  summaryThrough: 0,     // the turn the summary in the Memory panel reaches
  retry: null,           // the message that last failed ({text, actor, session, key}): sent again, it keeps its key
  // what this server can do: null = not known yet, false = it answered "unknown action"/field
  memoryCursor: null,    // list_memories paging
  can: { listSessions: null, history: null, explain: null, longTerm: null, listMemories: null },
};

// -- talking to the server -------------------------------------------------------------------

class ServerError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** The body of a JSON answer, or a stand-in naming what came instead. */
async function readJson(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return { error: text.trim() || response.statusText || "no answer" };
  }
}

/** A JSON request to /invocations for the current actor and session; throws ServerError on a non-2xx. */
async function invoke(body, options = {}) {
  let response;
  try {
    response = await fetch("/invocations", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ actor_id: state.actor, session_id: state.session, ...body }),
      signal: options.signal,
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ServerError(0, "cannot reach the server (is it still running?)");
  }
  if (!response.ok) {
    const data = await readJson(response);
    throw new ServerError(response.status, String(data.error ?? "request failed"), response.headers.get("Retry-After"));
  }
  return response;
}

async function action(name, fields = {}) {
  return readJson(await invoke({ action: name, ...fields }));
}

/** A 400 saying the server does not know an action or field: that feature is absent (not an error). */
function isUnknown(error, word) {
  return error instanceof ServerError && error.status === 400 && /unknown|not allowed|unexpected/i.test(error.message)
    && (!word || error.message.includes(word));
}

/** What to tell the user about a failed request, by status. */
function describe(error) {
  if (!(error instanceof ServerError)) return `Something went wrong: ${error.message}`;
  switch (error.status) {
    case 0: return `Cannot reach the server: ${error.message}.`;
    case 429: return `This session is busy (another turn of it is running). Try again in ${error.retryAfter || "a few"} s.`;
    case 409: return `Conflict: ${error.message}. Reload the session and try again.`;
    case 413: return `Too long for the server: ${error.message}`;
    case 502: return `The model call failed: ${error.message}`;
    case 503: return `Unavailable for now: ${error.message}. Try again shortly.`;
    default: return `${error.message} (HTTP ${error.status})`;
  }
}

/** The events of a Server-Sent Events body: each `data:` payload, parsed as JSON. */
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const parse = (block) => {
    const data = block.split("\n").filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).replace(/^ /, ""));
    return data.length ? [JSON.parse(data.join("\n"))] : [];
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r/g, "");  // JSON never holds a raw CR, so dropping every one is safe
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      yield* parse(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
  }
  if (buffer.trim()) yield* parse(buffer);
}

// -- the page --------------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(text, kind = "") {
  $("status").textContent = text;
  $("status").className = `status ${kind}`;
}

function setBusy(busy) {
  state.busy = busy;
  for (const id of ["send", "summarize", "clear", "new-session"]) $(id).disabled = busy;
  $("stop").hidden = !busy || !state.controller;
}

function randomHex(bytes) {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function newSessionId() {
  const now = new Date().toISOString().replace(/[-:T]/g, "").slice(0, 12);  // YYYYMMDDhhmm, UTC
  return `chat-${now}-${randomHex(3)}`;
}

/** The message's idempotency key: a message sent again after a failure keeps its key, so it is stored once. */
function idempotencyKey(text) {
  const same = state.retry && state.retry.text === text && state.retry.actor === state.actor
    && state.retry.session === state.session;
  if (!same) state.retry = { text, actor: state.actor, session: state.session, key: `web-${randomHex(12)}` };
  return state.retry.key;
}

/** Actor and session live in the address (?actor=…&session=…), so a reload or a link reopens the conversation. */
function saveLocation() {
  const url = new URL(location.href);
  url.searchParams.set("actor", state.actor);
  url.searchParams.set("session", state.session);
  history.replaceState(null, "", url);
  localStorage.setItem("actor", state.actor);
}

function formatTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso ?? "")
    : date.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

function plural(n, word, words = `${word}s`) {
  return `${n} ${n === 1 ? word : words}`;
}

// -- the conversation ------------------------------------------------------------------------

/** One turn in the log: the user's message, the reply, and what memory did for it. */
function turnItem(user, assistant) {
  const item = el("li", "turn");
  const you = el("div", "msg user");
  you.append(el("span", "who", "You"), el("p", "text", user));
  const reply = el("div", "msg assistant");
  const text = el("p", "text", assistant);
  reply.append(el("span", "who", "Assistant"), text);
  const meta = el("p", "meta");
  item.append(you, reply, meta);
  return { item, text, meta };
}

function numberTurn(item, turn) {
  item.id = `turn-${turn}`;
  item.dataset.turn = turn;
  item.querySelector(".msg.user .who").textContent = `You · turn ${turn}`;
}

function turnRange(turns) {
  if (!turns.length) return "";
  const contiguous = turns.every((t, i) => i === 0 || t === turns[i - 1] + 1);
  return contiguous && turns.length > 2 ? `${turns[0]}–${turns[turns.length - 1]}` : turns.join(", ");
}

/** A link to a turn of this session (in the log once its history is read). */
function turnLink(turn) {
  const link = el("a", "", String(turn));
  link.href = `#turn-${turn}`;
  return link;
}

/** What the memory layer put in front of the model for one turn: the final event's `memory` (explain). */
function memoryBox(memory) {
  const box = el("div", "memory-box");
  box.append(el("strong", "", "What memory gave the model"));
  const list = el("ul");
  const windowTurns = memory.window?.turns ?? [];
  const windowLine = el("li", "", windowTurns.length ? `window: ${windowTurns.length === 1 ? "turn" : "turns"} `
    : "window: no earlier turn");
  const range = turnRange(windowTurns);
  if (range.includes("–")) {
    windowLine.append(turnLink(windowTurns[0]), "–", turnLink(windowTurns[windowTurns.length - 1]));
  } else {
    windowTurns.forEach((t, i) => windowLine.append(i ? ", " : "", turnLink(t)));
  }
  const summary = memory.summary;
  const recalled = memory.long_term ?? [];
  const longTerm = el("li", "", recalled.length ? `long-term: ${plural(recalled.length, "record")} recalled`
    : "long-term: nothing recalled");
  if (recalled.length) {
    const records = el("ul", "records");
    for (const r of recalled) {
      const score = typeof r.score === "number" ? r.score.toFixed(2) : r.score;
      const item = el("li", "recalled");
      item.dataset.recordId = r.record_id;
      // the text the model was handed (an older server reports ids and scores only)
      if (typeof r.text === "string") item.append(el("p", "recalled-text", r.text));
      item.append(el("span", "recalled-meta",
        `${r.role ? `${r.role}, ` : ""}session ${r.session_id}, turn ${r.turn} · score ${score}`));
      records.append(item);
    }
    longTerm.classList.add("with-records");  // the records' text takes the box's whole width
    longTerm.append(records);
  }
  list.append(windowLine, el("li", "", summary ? `summary: turns 1–${summary.through_turn}` : "summary: none"), longTerm);
  box.append(list);
  return box;
}

function scrollToEnd() {
  $("log").scrollTop = $("log").scrollHeight;
}

/** The rolling summary moved on (a turn's memory report says so): show its new text. */
async function refreshSummary(memory) {
  const through = memory?.summary?.through_turn ?? 0;
  if (through <= state.summaryThrough || state.can.history === false) return;
  try {
    showSummary((await action("get_history", { limit: 1 })).summary);
  } catch {
    // the panel keeps the older summary; the turn itself went through
  }
}

function finishTurn(turn, final) {
  numberTurn(turn.item, final.message_count);
  turn.meta.textContent = final.replayed
    ? `turn ${final.message_count} · stored already: the server answered with the stored reply`
    : `turn ${final.message_count} · ${plural(final.history_length, "earlier turn")} in context`
      + (final.truncated ? " · cut at MAX_TOKENS" : "");
  if ($("explain").checked && final.memory) turn.item.append(memoryBox(final.memory));
}

function failTurn(turn, message, outcome = "Nothing of this turn was stored.") {
  turn.item.classList.add("failed");
  turn.meta.textContent = `${message} ${outcome}`;
}

const MAYBE_STORED = "It may have been stored: sending it again is safe, it keeps its idempotency key.";

async function sendMessage(text) {
  const turn = turnItem(text, "");
  turn.text.dataset.deltas = "0";
  turn.item.setAttribute("aria-busy", "true");
  $("log").append(turn.item);
  scrollToEnd();
  state.controller = new AbortController();
  setBusy(true);
  setStatus("");
  const wantExplain = $("explain").checked && state.can.explain !== false;
  const message = { message: text, stream: true, idempotency_key: idempotencyKey(text) };
  try {
    let response;
    try {
      response = await invoke({ ...message, ...(wantExplain ? { explain: true } : {}) },
        { signal: state.controller.signal });
    } catch (e) {
      if (!wantExplain || !isUnknown(e, "explain")) throw e;
      state.can.explain = false;  // an older server: ask again without it
      response = await invoke(message, { signal: state.controller.signal });
    }
    let final = null;
    for await (const event of sseEvents(response.body)) {
      if (typeof event === "string") {
        turn.text.append(event);
        turn.text.dataset.deltas = String(Number(turn.text.dataset.deltas) + 1);
        scrollToEnd();
      } else {
        final = event;
      }
    }
    if (!final) throw new TypeError("the stream ended early");
    if (final.error) throw new ServerError(final.status ?? 500, final.error);
    if (wantExplain && final.memory) state.can.explain = true;
    state.retry = null;
    finishTurn(turn, final);
    turn.item.classList.add("done");
    scrollToEnd();
    loadSessions();
    refreshSummary(final.memory);
    loadMemories();
  } catch (e) {
    if (e.name === "AbortError") {
      failTurn(turn, "Stopped.");  // the server cancels a turn whose client hangs up
    } else {
      const lost = !(e instanceof ServerError);  // the stream broke off before its final event
      const why = lost ? "The connection was lost before the reply was complete." : describe(e);
      failTurn(turn, why, lost ? MAYBE_STORED : undefined);
      setStatus(why, "error");
      if (!$("message").value) $("message").value = text;  // so it can be sent again
    }
  } finally {
    turn.item.removeAttribute("aria-busy");
    state.controller = null;
    setBusy(false);
    $("message").focus();
  }
}

// -- sessions and history --------------------------------------------------------------------

function showSession() {
  $("session-id").textContent = state.session;
  for (const button of document.querySelectorAll(".session-list button")) {
    if (button.dataset.session === state.session) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
}

function resetConversation() {
  $("log").replaceChildren();
  $("older").hidden = true;
  $("history-note").hidden = true;
  state.nextBefore = null;
  showSummary(null);
}

function showSummary(summary) {
  state.summaryThrough = summary?.through_turn ?? 0;
  $("summary-text").textContent = summary?.text
    ? `${summary.text}${summary.through_turn ? ` (turns 1–${summary.through_turn})` : ""}`
    : "No summary yet: Summarise writes one, and the rolling summary keeps one once the session is longer than the window.";
}

function openSession(session) {
  if (state.busy) return;
  state.session = session;
  saveLocation();
  showSession();
  resetConversation();
  setStatus("");
  loadHistory();
}

function sessionButton(s) {
  const button = el("button", "session");
  button.type = "button";
  button.dataset.session = s.session_id;
  button.append(el("span", "session-name", s.session_id),
    el("span", "session-meta", `${plural(s.message_count, "message")} · ${formatTime(s.last_activity)}`));
  if (s.first_message) button.append(el("span", "session-first", s.first_message));
  button.addEventListener("click", () => openSession(s.session_id));
  const item = el("li");
  item.append(button);
  return item;
}

async function loadSessions(more = false) {
  if (state.can.listSessions === false) return;
  try {
    const data = await action("list_sessions", { limit: 20, cursor: more ? state.nextCursor : null });
    state.can.listSessions = true;
    if (!more) $("session-list").replaceChildren();
    for (const s of data.sessions ?? []) $("session-list").append(sessionButton(s));
    state.nextCursor = data.next_cursor ?? null;
    $("more-sessions").hidden = !state.nextCursor;
    $("sessions-note").hidden = Boolean(data.sessions?.length) || more;
    $("sessions-note").textContent = `No stored sessions for ${state.actor} yet.`;
    showSession();
  } catch (e) {
    $("sessions-note").hidden = false;
    if (isUnknown(e, "list_sessions")) {
      state.can.listSessions = false;
      $("sessions-note").textContent = "This server cannot list sessions (no list_sessions action).";
    } else {
      $("sessions-note").textContent = describe(e);
    }
  }
}

async function loadHistory(older = false) {
  if (state.can.history === false) return;
  $("log").setAttribute("aria-busy", "true");
  try {
    const data = await action("get_history", { limit: 50, before: older ? state.nextBefore : null });
    state.can.history = true;
    const items = (data.turns ?? []).map((t) => {
      const turn = turnItem(t.user, t.assistant);
      numberTurn(turn.item, t.turn);
      turn.meta.textContent = `turn ${t.turn} · ${formatTime(t.created_at)}`;
      turn.item.classList.add("done", "stored");
      return turn.item;
    });
    $("log").prepend(...items);
    state.nextBefore = data.next_before ?? null;
    $("older").hidden = state.nextBefore === null;
    if (!older) showSummary(data.summary);
    if (!older) scrollToEnd();
  } catch (e) {
    $("history-note").hidden = false;
    if (isUnknown(e, "get_history")) {
      state.can.history = false;
      $("history-note").textContent = "This server cannot read a session back (no get_history action).";
    } else {
      $("history-note").textContent = describe(e);
    }
  } finally {
    $("log").removeAttribute("aria-busy");
  }
}

async function runSessionAction(name, done) {
  setBusy(true);
  try {
    done(await action(name));
  } catch (e) {
    setStatus(describe(e), "error");
  } finally {
    setBusy(false);
  }
}

// -- long-term memory (feature-detected) ----------------------------------------------------

async function detectLongTerm() {
  try {
    await action("search_memory", { query: "probe", top_k: 1 });
    state.can.longTerm = true;
  } catch (e) {
    // any answer but "unknown action" means the server has it (a probe may be refused for other reasons)
    state.can.longTerm = !isUnknown(e, "search_memory") && e.status !== 0;
  }
  $("search-form").hidden = !state.can.longTerm;
  $("forget").hidden = !state.can.longTerm;
  $("ltm-note").textContent = state.can.longTerm
    ? "Memories the server keeps across this actor's sessions."
    : "This server has no long-term memory (no search_memory action).";
  loadMemories();
}

/** One remembered record in the panel, with the button that deletes it (this record only). */
function rememberedItem(m) {
  const item = el("li", "memory-item");
  item.dataset.recordId = m.record_id;
  const remove = el("button", "delete", "Delete");
  remove.type = "button";
  remove.setAttribute("aria-label", `Delete the memory: ${m.text.slice(0, 60)}`);
  remove.addEventListener("click", () => deleteMemory(m, item, remove));
  item.append(el("p", "text", m.text), remove,
    el("p", "meta", `${m.role} · session ${m.session_id}, turn ${m.turn} · ${formatTime(m.created_at)}`));
  return item;
}

/** The panel "What is remembered": this actor's records, newest first (`more`: the next page). */
async function loadMemories(more = false) {
  if (!state.can.longTerm || state.can.listMemories === false) return;
  try {
    const data = await action("list_memories", { limit: 20, cursor: more ? state.memoryCursor : null });
    state.can.listMemories = true;
    $("remembered").hidden = false;
    if (!more) $("memory-list").replaceChildren();
    for (const m of data.memories ?? []) $("memory-list").append(rememberedItem(m));
    state.memoryCursor = data.next_cursor ?? null;
    $("more-memories").hidden = !state.memoryCursor;
    const none = !$("memory-list").children.length;
    $("remembered-note").hidden = !none;
    $("remembered-note").textContent = `Nothing is remembered about ${state.actor} yet.`;
  } catch (e) {
    if (isUnknown(e, "list_memories")) {
      state.can.listMemories = false;  // an older server: no panel
      $("remembered").hidden = true;
      return;
    }
    $("remembered").hidden = false;
    $("remembered-note").hidden = false;
    $("remembered-note").textContent = describe(e);
  }
}

async function deleteMemory(memory, item, button) {
  button.disabled = true;
  try {
    await action("delete_memory", { record_id: memory.record_id });
    item.remove();
    setStatus("Deleted one memory: it will not be recalled again.");
  } catch (e) {
    if (e instanceof ServerError && e.status === 404) {
      item.remove();  // already gone (deleted elsewhere, or forgotten)
      setStatus("That memory was already deleted.");
    } else {
      button.disabled = false;
      setStatus(describe(e), "error");
    }
  }
  $("remembered-note").hidden = Boolean($("memory-list").children.length);
  $("remembered-note").textContent = `Nothing is remembered about ${state.actor} yet.`;
}

async function searchMemory(query) {
  $("search-results").replaceChildren();
  try {
    const data = await action("search_memory", { query, top_k: 5 });
    const memories = data.memories ?? [];
    if (!memories.length) $("search-results").append(el("li", "note", "Nothing found."));
    for (const m of memories) {
      const item = el("li");
      const score = typeof m.score === "number" ? m.score.toFixed(2) : m.score;
      item.append(el("p", "text", m.text), el("p", "meta", `session ${m.session_id} · ${formatTime(m.created_at)} · score ${score}`));
      $("search-results").append(item);
    }
  } catch (e) {
    $("search-results").append(el("li", "error", describe(e)));
  }
}

// -- wiring ----------------------------------------------------------------------------------

function startNewSession() {
  if (state.busy) return;
  openSession(newSessionId());
  $("message").focus();
}

function setActor(actor) {
  state.actor = actor;
  $("actor").value = actor;
  state.nextCursor = null;
  $("session-list").replaceChildren();
  loadSessions();
  loadMemories();
}

function wire() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("message").value;
    if (state.busy || !text.trim()) return;
    $("message").value = "";
    sendMessage(text);
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => state.controller?.abort());
  $("new-session").addEventListener("click", startNewSession);
  $("more-sessions").addEventListener("click", () => loadSessions(true));
  $("older").addEventListener("click", () => loadHistory(true));
  $("more-memories").addEventListener("click", () => loadMemories(true));
  $("actor-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const actor = $("actor").value.trim();
    if (!ID_PATTERN.test(actor) || state.busy) return;
    setActor(actor);
    startNewSession();
  });
  $("summarize").addEventListener("click", () => runSessionAction("summarize_session", (data) => {
    showSummary({ text: data.summary });
    setStatus("Summary written.");
  }));
  $("clear").addEventListener("click", () => {
    if (!confirm(`Delete every message of session ${state.session}?`)) return;
    runSessionAction("clear_session", (data) => {
      resetConversation();
      setStatus(`Cleared: ${plural(data.deleted ?? 0, "message")} deleted.`);
      loadSessions();
      loadMemories();  // the session's memories went with it
    });
  });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    searchMemory($("search-query").value);
  });
  $("forget").addEventListener("click", () => {
    if (!confirm(`Forget everything long-term memory holds for ${state.actor}?`)) return;
    action("forget").then((data) => {
      setStatus(`Forgot ${plural(data.deleted ?? 0, "memory", "memories")}.`);
      loadMemories();
    }, (e) => setStatus(describe(e), "error"));
  });
}

function start() {
  wire();
  const params = new URL(location.href).searchParams;
  const actor = [params.get("actor"), localStorage.getItem("actor")].find((a) => a && ID_PATTERN.test(a));
  state.actor = actor || "default_user";
  $("actor").value = state.actor;
  const session = params.get("session");
  if (session && ID_PATTERN.test(session)) openSession(session);
  else openSession(newSessionId());
  loadSessions();
  detectLongTerm();
  $("message").focus();
}

start();
