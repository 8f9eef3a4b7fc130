// The Strata console: pages built in the browser from the JSON API.
//
// Rules this file keeps (the server's Content-Security-Policy enforces
// the first two):
// - no inline script and no eval: handlers are attached with
//   addEventListener;
// - every text from the server (names, metadata, plugin messages) goes
//   into the page through text nodes, never as HTML;
// - the API key lives in this tab's sessionStorage and leaves it only in
//   the Authorization header.

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const statusLine = document.getElementById("status");

// ---- session ---------------------------------------------------------

const session = {
  get key() {
    return sessionStorage.getItem("strata.key");
  },
  get namespace() {
    return sessionStorage.getItem("strata.namespace") || "default";
  },
  set(key, namespace) {
    sessionStorage.setItem("strata.key", key);
    sessionStorage.setItem("strata.namespace", namespace);
  },
  clear() {
    sessionStorage.removeItem("strata.key");
    sessionStorage.removeItem("strata.namespace");
  },
};

// ---- DOM -------------------------------------------------------------

/** An element: `props` sets attributes (and `on*` listeners); children
 * that are not nodes become text. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name === "value") node.value = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces `node`'s children with `children`, leaving out the absent. */
function put(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

/** Replaces the page's content; the page's streams stop with `page.abort`.
 * A page that finishes loading after the reader went elsewhere shows
 * nothing, and its streams never start. */
let page = new AbortController();
let wanted = "";
function show(title, ...content) {
  if (location.hash !== wanted) {
    const stale = new AbortController();
    stale.abort();
    return stale.signal;
  }
  page.abort();
  page = new AbortController();
  document.title = `${title} · Strata console`;
  put(main, el("h2", {}, title), ...content);
  main.focus({ preventScroll: true });
  return page.signal;
}

function say(message) {
  statusLine.textContent = message;
}

const link = (hash, text) => el("a", { href: hash }, text);
const enc = encodeURIComponent;

function table(headers, rows, caption) {
  return el(
    "div",
    { class: "table" },
    el(
      "table",
      {},
      caption ? el("caption", {}, caption) : null,
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: headers.length }, "Nothing here yet."))),
    ),
  );
}

const row = (...cells) => el("tr", {}, cells.map((c) => el("td", {}, c)));

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${seconds % 60}s`;
  return `${Math.floor(seconds / 3600)}h ${Math.floor((seconds % 3600) / 60)}m`;
}

// ---- API -------------------------------------------------------------

class ApiError extends Error {}

function headers(extra = {}) {
  return { Authorization: `Bearer ${session.key}`, "X-Namespace": session.namespace, ...extra };
}

/** A call of the API: its JSON, or an ApiError saying the problem. */
async function api(method, path, body) {
  const init = { method, headers: headers() };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let value = null;
  try {
    value = text ? JSON.parse(text) : null;
  } catch {
    value = { detail: text };
  }
  if (response.status === 401) {
    signOut("The key was refused; sign in again.");
  }
  if (!response.ok) {
    const fields = (value?.invalid_params ?? []).map((p) => `${p.name}: ${p.reason}`);
    throw new ApiError([value?.detail ?? response.statusText, ...fields].join(" · "));
  }
  return value;
}

/** Every item of a list, following its pages. */
async function all(path) {
  const items = [];
  let token = null;
  const sep = path.includes("?") ? "&" : "?";
  do {
    const page = await api("GET", `${path}${sep}limit=1000${token ? `&page_token=${enc(token)}` : ""}`);
    items.push(...page.results);
    token = page.next_page_token;
  } while (token);
  return items;
}

/** Calls `onBatch` with each state of a batch from its event stream, until
 * it ends or `signal` aborts. */
async function watch(bucket, batch, onBatch, signal) {
  const response = await fetch(`/v1/buckets/${enc(bucket)}/batches/${enc(batch)}/events`, {
    headers: headers({ Accept: "text/event-stream" }),
    signal,
  });
  if (!response.ok) return;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) onBatch(JSON.parse(data));
    }
  }
}

/** Runs `action`, saying its error in the page's status line. */
async function attempt(action) {
  try {
    return await action();
  } catch (e) {
    if (e.name !== "AbortError") say(`Error: ${e.message}`);
    return undefined;
  }
}

// ---- sign in ---------------------------------------------------------

function signOut(message) {
  session.clear();
  delete document.getElementById("who").dataset.namespace;
  nav.hidden = true;
  location.hash = "#/";
  render();
  if (message) say(message);
}

function signIn() {
  const key = el("input", { id: "key", type: "password", autocomplete: "off", required: true });
  const namespace = el("input", { id: "namespace", value: "default", required: true });
  const form = el(
    "form",
    { class: "card" },
    el("p", {}, "The key stays in this tab only, and is sent to this server alone."),
    el("label", { for: "key" }, "API key"),
    key,
    el("label", { for: "namespace" }, "Namespace"),
    namespace,
    el("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    session.set(key.value.trim(), namespace.value.trim());
    const ok = await attempt(() => api("GET", "/v1/buckets?limit=1"));
    if (ok) {
      location.hash = "#/batches";
      render();
    } else {
      session.clear();
    }
  });
  show("Sign in", form);
  key.focus();
}

// ---- buckets and objects ---------------------------------------------

async function buckets() {
  const name = el("input", { id: "bucket-name", required: true, pattern: "[A-Za-z0-9._\\-]{1,64}" });
  const form = el("form", { class: "inline" }, el("label", { for: "bucket-name" }, "New bucket"), name, el("button", { type: "submit" }, "Create"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await attempt(() => api("POST", "/v1/buckets", { bucket_name: name.value }))) buckets();
  });
  const list = el("div");
  show("Buckets", form, list);
  const items = await attempt(() => all("/v1/buckets"));
  if (!items) return;
  list.replaceChildren(
    table(
      ["Name", "Id", "Created"],
      items.map((b) => row(link(`#/buckets/${enc(b.bucket_id)}`, b.bucket_name), b.bucket_id, b.created_at)),
    ),
  );
}

/** Uploads `files` into `bucket` one after another, each with a progress
 * bar (XMLHttpRequest: fetch reports no upload progress). */
async function upload(bucket, files, into) {
  for (const file of files) {
    const bar = el("progress", { max: 100, value: 0, "aria-label": `Uploading ${file.name}` });
    const line = el("li", {}, file.name, " ", bar);
    into.append(line);
    const done = await new Promise((resolve) => {
      const request = new XMLHttpRequest();
      request.open("POST", `/v1/buckets/${enc(bucket)}/objects`);
      for (const [k, v] of Object.entries(headers())) request.setRequestHeader(k, v);
      request.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total;
      });
      request.addEventListener("load", () => resolve(request));
      request.addEventListener("error", () => resolve(request));
      const form = new FormData();
      form.append("key", file.name);
      form.append("file", file, file.name);
      request.send(form);
    });
    bar.value = 100;
    if (done.status >= 200 && done.status < 300) line.append(" uploaded");
    else {
      let detail = done.statusText;
      try {
        detail = JSON.parse(done.responseText).detail;
      } catch {}
      line.append(` failed: ${detail}`);
    }
  }
}

async function preview(bucket, object, into) {
  const response = await fetch(`/v1/buckets/${enc(bucket)}/objects/${enc(object.object_id)}/content`, { headers: headers() });
  if (!response.ok) return say(`Error: cannot read ${object.key}`);
  const blob = await response.blob();
  if ((object.mime_type ?? "").startsWith("image/")) {
    into.replaceChildren(el("img", { src: URL.createObjectURL(blob), alt: object.key, class: "preview" }));
  } else {
    const text = await blob.slice(0, 64 * 1024).text();
    into.replaceChildren(el("pre", { class: "preview" }, text));
  }
}

async function bucket(id) {
  const input = el("input", { id: "files", type: "file", multiple: true });
  const uploads = el("ul", { class: "uploads" });
  const drop = el(
    "div",
    { class: "drop", tabindex: 0, role: "group", "aria-label": "Upload files" },
    el("p", {}, "Drop files here, or "),
    el("label", { for: "files" }, "choose files"),
    input,
    uploads,
  );
  const list = el("div");
  const shown = el("div", { "aria-live": "polite" });
  const refresh = async () => {
    const objects = await attempt(() => all(`/v1/buckets/${enc(id)}/objects`));
    if (!objects) return;
    list.replaceChildren(
      table(
        ["Key", "Type", "Size", ""],
        objects.map((o) =>
          row(o.key, o.mime_type, bytes(o.size_bytes), el("button", { type: "button", onclick: () => preview(id, o, shown) }, "Preview")),
        ),
        "Objects",
      ),
    );
  };
  const send = async (files) => {
    await upload(id, [...files], uploads);
    refresh();
  };
  input.addEventListener("change", () => send(input.files));
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    send(e.dataTransfer.files);
  });
  show(`Bucket ${id}`, el("p", {}, link(`#/batches?bucket=${enc(id)}`, "Its batches")), drop, list, shown);
  refresh();
}

// ---- batches -----------------------------------------------------------

const TERMINAL = ["COMPLETED", "FAILED", "CANCELED"];
const LIVE_ROWS = 3;

function progressCells(b) {
  const p = b.progress;
  return [
    el("progress", { max: 100, value: p.percent, "aria-label": `${p.percent}% done` }),
    `${p.processed}/${p.total} (${p.percent}%)`,
    `${p.items_per_second.toFixed(1)}/s`,
    duration(p.eta_seconds),
  ];
}

async function batches(params) {
  const all_ = await attempt(() => all("/v1/buckets"));
  if (!all_) return;
  const chosen = params.get("bucket") ?? all_[0]?.bucket_id;
  const picker = el("select", { id: "bucket" }, all_.map((b) => el("option", { value: b.bucket_id, selected: b.bucket_id === chosen }, b.bucket_name)));
  picker.addEventListener("change", () => (location.hash = `#/batches?bucket=${enc(picker.value)}`));
  const ids = el("input", { id: "object-ids", placeholder: "all objects" });
  const create = el(
    "form",
    { class: "inline" },
    el("label", { for: "object-ids" }, "New batch of"),
    ids,
    el("button", { type: "submit" }, "Create"),
  );
  create.addEventListener("submit", async (e) => {
    e.preventDefault();
    const listed = ids.value.split(/[\s,]+/).filter(Boolean);
    const objectIds = listed.length ? listed : ((await attempt(() => all(`/v1/buckets/${enc(chosen)}/objects`))) ?? []).map((o) => o.object_id);
    const b = await attempt(() => api("POST", `/v1/buckets/${enc(chosen)}/batches`, { object_ids: objectIds }));
    if (b) location.hash = `#/buckets/${enc(chosen)}/batches/${enc(b.batch_id)}`;
  });
  const list = el("div");
  const signal = show("Batches", el("p", {}, el("label", { for: "bucket" }, "Bucket "), picker), chosen ? create : null, list);
  if (!chosen) return list.replaceChildren(el("p", {}, "Create a bucket first."));
  const items = await attempt(() => all(`/v1/buckets/${enc(chosen)}/batches`));
  if (!items) return;
  let live = 0;
  const rows = items.map((b) => {
    const tr = el("tr");
    const fill = (b) =>
      tr.replaceChildren(
        ...[link(`#/buckets/${enc(chosen)}/batches/${enc(b.batch_id)}`, b.batch_name ?? b.batch_id), b.status, ...progressCells(b), b.health].map((c) =>
          el("td", {}, c),
        ),
      );
    fill(b);
    // A browser keeps a few connections per server: only running batches
    // are streamed, at most LIVE_ROWS of them.
    if (["QUEUED", "PROCESSING"].includes(b.status) && live++ < LIVE_ROWS) watch(chosen, b.batch_id, fill, signal).catch(() => {});
    return tr;
  });
  list.replaceChildren(table(["Batch", "Status", "Progress", "Done", "Rate", "ETA", "Health"], rows));
}

async function batchPage(bucketId, id) {
  const path = `/v1/buckets/${enc(bucketId)}/batches/${enc(id)}`;
  const head = el("div", { class: "card" });
  const checks = el("div");
  const shards = el("div");
  const failures = el("div");
  const actions = el("div", { class: "actions" });
  const signal = show(`Batch ${id}`, head, actions, checks, shards, failures);
  const act = (label, verb) =>
    el("button", { type: "button", onclick: async () => (await attempt(() => api("POST", `${path}/${verb}`, {}))) && batchPage(bucketId, id) }, label);
  const details = async () => {
    const [health, shardList, failed] = await Promise.all([
      attempt(() => api("GET", `${path}/health`)),
      attempt(() => all(`${path}/shards`)),
      attempt(() => all(`${path}/objects?status=failed`)),
    ]);
    if (health)
      checks.replaceChildren(
        table(["Check", "Result", "Why"], health.checks.map((c) => row(c.name, c.status, c.detail)), `Health: ${health.health}`),
      );
    if (shardList) {
      // Per worker: the shards it ran or runs, and their objects done.
      const byWorker = new Map();
      for (const s of shardList) {
        if (!s.worker) continue;
        const w = byWorker.get(s.worker) ?? { shards: 0, objects: 0, processed: 0 };
        w.shards += 1;
        w.objects += s.objects;
        w.processed += s.processed;
        byWorker.set(s.worker, w);
      }
      shards.replaceChildren(
        table(
          ["Shard", "Status", "Objects", "Done", "Errors", "Attempts", "Worker"],
          shardList.map((s) => row(s.shard_index, s.status, s.objects, s.processed, s.errors, s.attempts, s.worker ?? "-")),
          "Shards",
        ),
        table(
          ["Worker", "Shards", "Done"],
          [...byWorker].map(([worker, w]) =>
            row(worker, w.shards, el("span", {}, el("progress", { max: w.objects, value: w.processed, "aria-label": `${worker}: ${w.processed} of ${w.objects}` }), ` ${w.processed}/${w.objects}`)),
          ),
          "Workers",
        ),
      );
    }
    if (failed)
      failures.replaceChildren(
        table(["Object", "Why"], failed.map((o) => row(o.object_id, o.error ?? "-")), "Failed objects"),
      );
  };
  let last = null;
  const fill = (b) => {
    const stage = b.progress.current_stage;
    put(
      head,
      el("p", { class: "status" }, b.status_message),
      el("p", {}, el("progress", { max: 100, value: b.progress.percent, "aria-label": `${b.progress.percent}% done` })),
      el("p", {}, `Status ${b.status} · health ${b.health}`, stage ? ` · stage ${stage.name} (${stage.index + 1}/${stage.total})` : ""),
      b.error_message ? el("p", { class: "error" }, b.error_message) : null,
    );
    actions.replaceChildren(
      ...(b.status === "DRAFT" ? [act("Submit", "submit")] : []),
      ...(["QUEUED", "PROCESSING"].includes(b.status) ? [act("Cancel", "cancel")] : []),
      ...(TERMINAL.includes(b.status) ? [act("Retry", "retry")] : []),
    );
    if (last !== b.status || TERMINAL.includes(b.status)) details();
    last = b.status;
  };
  const first = await attempt(() => api("GET", path));
  if (!first) return;
  fill(first);
  if (!TERMINAL.includes(first.status)) watch(bucketId, id, fill, signal).catch(() => {});
}

// ---- collections and documents -----------------------------------------

/** The form that creates a collection: a name, a bucket, extractors
 * (`name` or `name@version`, comma-separated) and their parameters as one
 * JSON object by extractor name. */
function collectionForm(bucketList) {
  const name = el("input", { id: "collection-name", required: true });
  const bucketPick = el("select", { id: "collection-bucket" }, bucketList.map((b) => el("option", { value: b.bucket_id }, b.bucket_name)));
  const steps = el("input", { id: "collection-extractors", required: true, placeholder: "text-extract, keywords@1.0.0" });
  const params = el("textarea", { id: "collection-params", rows: 2, placeholder: '{"keywords": {"k": 5}}' });
  const form = el(
    "form",
    { class: "card" },
    el("label", { for: "collection-name" }, "New collection"),
    name,
    el("label", { for: "collection-bucket" }, "Over bucket"),
    bucketPick,
    el("label", { for: "collection-extractors" }, "Extractors"),
    steps,
    el("label", { for: "collection-params" }, "Parameters (JSON, by extractor)"),
    params,
    el("button", { type: "submit" }, "Create"),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    let byName = {};
    try {
      byName = params.value.trim() ? JSON.parse(params.value) : {};
    } catch (error) {
      return say(`Error: parameters are not JSON: ${error.message}`);
    }
    const extractors = steps.value
      .split(",")
      .map((step) => step.trim())
      .filter(Boolean)
      .map((step) => {
        const [extractor, version] = step.split("@");
        return { name: extractor, version: version ?? null, params: byName[extractor] ?? null };
      });
    const created = await attempt(() =>
      api("POST", "/v1/collections", { collection_name: name.value, source: { bucket_id: bucketPick.value }, extractors }),
    );
    if (created) location.hash = `#/collections/${enc(created.collection_id)}`;
  });
  return form;
}

async function collections() {
  const [items, bucketList] = await Promise.all([attempt(() => all("/v1/collections")), attempt(() => all("/v1/buckets"))]);
  if (!items || !bucketList) return;
  show(
    "Collections",
    collectionForm(bucketList),
    table(
      ["Name", "Bucket", "Documents", "Extractors"],
      items.map((c) =>
        row(
          link(`#/collections/${enc(c.collection_id)}`, c.collection_name),
          c.source.bucket_id,
          c.document_count,
          c.extractors.map((e) => (e.version ? `${e.name}@${e.version}` : e.name)).join(", "),
        ),
      ),
    ),
  );
}

async function collection(id) {
  const c = await attempt(() => api("GET", `/v1/collections/${enc(id)}`));
  if (!c) return;
  const pinned = Object.fromEntries(c.extractors.map((e) => [e.name, e.version]));
  const tiers = el(
    "ol",
    { class: "tiers", "aria-label": "Pipeline, tier by tier" },
    c.tiers.map((tier, i) =>
      el(
        "li",
        {},
        el("h3", {}, `Tier ${i + 1}`),
        el(
          "ul",
          {},
          tier.map((step) => {
            const name = step.split("@")[0];
            return el("li", {}, step, " ", el("span", { class: "tag" }, pinned[name] ? "pinned" : "following"));
          }),
        ),
      ),
    ),
  );
  const docs = el("div");
  show(`Collection ${c.collection_name}`, tiers, el("h3", {}, "Documents"), docs);
  const items = await attempt(() => all(`/v1/collections/${enc(id)}/documents`));
  if (!items) return;
  docs.replaceChildren(
    ...items.map((d) => {
      const thumb = el("div");
      const details = el(
        "details",
        { class: "document" },
        el("summary", {}, d.object_id, d.errors.length ? ` · ${d.errors.length} errors` : ""),
        thumb,
        el("pre", {}, JSON.stringify({ features: d.features, errors: d.errors, metadata: d.metadata }, null, 2)),
      );
      // An image's thumbnail, read once the document is opened.
      details.addEventListener("toggle", async () => {
        if (!details.open || thumb.childElementCount) return;
        const object = await attempt(() => api("GET", `/v1/buckets/${enc(d.bucket_id)}/objects/${enc(d.object_id)}`));
        if (!(object?.mime_type ?? "").startsWith("image/")) return;
        const response = await fetch(`/v1/buckets/${enc(d.bucket_id)}/objects/${enc(d.object_id)}/content`, { headers: headers() });
        if (response.ok) {
          const url = URL.createObjectURL(await response.blob());
          thumb.replaceChildren(el("img", { src: url, alt: object.key, class: "thumb" }));
        }
      });
      return details;
    }),
  );
}

// ---- extractors and webhooks -------------------------------------------

async function extractors() {
  const items = await attempt(() => all("/v1/extractors"));
  if (!items) return;
  show(
    "Extractors",
    table(
      ["Name", "Latest", "Versions", "Owner", "Description"],
      items.map((x) =>
        row(
          x.name,
          x.latest_version,
          x.versions.map((v) => `${v.version}${v.deprecated ? " (deprecated)" : ""}${v.loaded ? " · loaded" : ""}`).join(", "),
          x.access?.owner?.name ?? "-",
          x.description,
        ),
      ),
    ),
  );
}

async function webhooks() {
  const items = await attempt(() => all("/v1/webhooks"));
  if (!items) return;
  show(
    "Webhooks",
    table(
      ["URL", "Events", "Active"],
      items.map((w) => row(link(`#/webhooks/${enc(w.webhook_id)}`, w.url), w.event_types.join(", "), w.active ? "yes" : "no")),
    ),
  );
}

async function webhook(id) {
  const list = el("div");
  show(`Webhook ${id}`, list);
  const refresh = async () => {
    const items = await attempt(() => all(`/v1/webhooks/${enc(id)}/deliveries`));
    if (!items) return;
    list.replaceChildren(
      table(
        ["Event", "State", "Attempts", "Last status", "Last error", ""],
        items.map((d) =>
          row(
            d.event_type,
            d.state,
            d.attempts,
            d.last_status_code ?? "-",
            d.last_error ?? "-",
            el(
              "button",
              {
                type: "button",
                onclick: async () => {
                  if (await attempt(() => api("POST", `/v1/webhooks/${enc(id)}/deliveries/${enc(d.delivery_id)}/redeliver`, {}))) {
                    say("Redelivery queued.");
                    refresh();
                  }
                },
              },
              "Redeliver",
            ),
          ),
        ),
        "Deliveries",
      ),
    );
  };
  refresh();
}

// ---- namespaces ------------------------------------------------------

/** The namespace acted in: a picker for admin keys (which may list
 * namespaces), its name for others. */
async function namespaces() {
  const who = document.getElementById("who");
  const shown = who.dataset.namespace;
  if (shown === session.namespace) return;
  who.dataset.namespace = session.namespace;
  who.replaceChildren(`namespace ${session.namespace}`);
  const response = await fetch("/v1/namespaces?limit=1000", { headers: headers() });
  if (!response.ok) return;
  const list = (await response.json()).results;
  const pick = el(
    "select",
    { id: "namespace-pick", "aria-label": "Namespace" },
    list.map((n) => el("option", { value: n.namespace_name, selected: n.namespace_name === session.namespace }, n.namespace_name)),
  );
  pick.addEventListener("change", () => {
    session.set(session.key, pick.value);
    location.hash = "#/batches";
    render();
  });
  who.replaceChildren(el("label", { for: "namespace-pick" }, "Namespace "), pick);
}

// ---- routes ----------------------------------------------------------

function render() {
  say("");
  wanted = location.hash;
  if (!session.key) return signIn();
  nav.hidden = false;
  namespaces();
  const [path, query] = location.hash.slice(1).split("?");
  const params = new URLSearchParams(query ?? "");
  let parts;
  try {
    parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    parts = [];
  }
  const routes = [
    [["buckets", "*", "batches", "*"], ([, b, , id]) => batchPage(b, id)],
    [["buckets", "*"], ([, b]) => bucket(b)],
    [["buckets"], () => buckets()],
    [["batches"], () => batches(params)],
    [["collections", "*"], ([, c]) => collection(c)],
    [["collections"], () => collections()],
    [["extractors"], () => extractors()],
    [["webhooks", "*"], ([, w]) => webhook(w)],
    [["webhooks"], () => webhooks()],
  ];
  for (const [pattern, page] of routes) {
    if (pattern.length === parts.length && pattern.every((p, i) => p === "*" || p === parts[i])) return page(parts);
  }
  return batches(params);
}

document.getElementById("sign-out").addEventListener("click", () => signOut("Signed out."));
window.addEventListener("hashchange", render);
render();
