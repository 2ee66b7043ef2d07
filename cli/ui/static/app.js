// refit's read-only web view. Every value from the server becomes a text node (never markup):
// host names, step messages and audit text are untrusted.

const POLL_MS = 2000;
const page = document.getElementById('page');
const trail = document.getElementById('trail');
const updated = document.getElementById('updated');

/** An element with attributes and children; strings become text nodes. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const link = (href, ...children) => h('a', { href }, ...children);
const state = (s) => h('span', { class: `state s-${s}`, 'data-state': s }, s);
const rolloutHref = (id) => `#/rollouts/${encodeURIComponent(id)}`;
const hostHref = (rolloutId, hostId) => `${rolloutHref(rolloutId)}/hosts/${encodeURIComponent(hostId)}`;

/** A page that shows hosts of the sim driver says so before anything else: nothing on them is real. */
const simulatedBanner = (text) => h('p', { class: 'simulated', 'data-simulated': '' }, text);
const simTag = () => h('span', { class: 'sim-tag', 'data-sim': '' }, 'SIMULATED');

/** A time in the browser's zone and in UTC, as the CLI shows windows in both. */
function when(iso) {
  if (!iso) return '-';
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return String(iso);
  return `${t.toLocaleString()} (${t.toISOString().slice(0, 16).replace('T', ' ')} UTC)`;
}

/** A time of day in the browser's zone; the full time is in the cell's title. */
function clock(iso) {
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? String(iso) : t.toLocaleTimeString();
}

function table(header, rows) {
  return h(
    'table',
    {},
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        header.map((c) => h('th', {}, c)),
      ),
    ),
    h('tbody', {}, rows),
  );
}

/** The filled part of a bar; set through the CSSOM, which the page's CSP allows (a style attribute it does not). */
function fill(percent) {
  const el = h('div');
  el.style.width = `${percent}%`;
  return el;
}

function card(label, value, attrs = {}) {
  return h(
    'div',
    { class: 'card', ...attrs },
    h('div', { class: 'label' }, label),
    h('div', { class: 'value' }, value),
  );
}

async function getJson(path) {
  const res = await fetch(path, { headers: { accept: 'application/json' } });
  const body = await res.json().catch(() => ({ error: `${res.status} ${res.statusText}` }));
  if (!res.ok) throw new Error(body.error ?? `${res.status}`);
  return body;
}

// --- pages -----------------------------------------------------------------------------------

function rolloutsPage(rows) {
  const body =
    rows.length === 0
      ? h('p', { class: 'muted' }, 'no rollouts yet: start one with refit rollout start <plan>')
      : table(
          ['rollout', 'state', 'started', 'ended'],
          rows.map((r) =>
            h(
              'tr',
              { 'data-rollout': r.id },
              h('td', {}, link(rolloutHref(r.id), r.id)),
              h('td', {}, state(r.state)),
              h('td', {}, when(r.startedAt)),
              h('td', {}, r.closedAt ? when(r.closedAt) : '-'),
            ),
          ),
        );
  return { trail: [h('span', {}, 'rollouts')], content: [h('h1', {}, 'Rollouts'), body] };
}

function rolloutPage({ status: s, online, simulated = [] }) {
  const sim = new Set(simulated);
  const budget = s.failureBudget;
  const used = budget.maxFailedHosts > 0 ? Math.min(100, (100 * budget.failed) / budget.maxFailedHosts) : 0;
  const cards = [
    card('state', state(s.state)),
    card(
      'hosts',
      Object.entries(s.counts)
        .filter(([, n]) => n > 0)
        .map(([k, n]) => `${n} ${k}`)
        .join(', ') || 'none',
    ),
    card(
      'failure budget',
      h(
        'span',
        { 'data-budget': '' },
        `${budget.failed} of ${budget.maxFailedHosts} failed hosts`,
        h('div', { class: 'bar' }, fill(used)),
      ),
    ),
    card(
      'pending approval',
      s.pendingApproval
        ? `${s.pendingApproval.gate} before wave ${s.pendingApproval.wave}, since ${when(s.pendingApproval.since)}: refit rollout approve ${s.id}`
        : 'none',
      { 'data-approval': '', class: s.pendingApproval ? 'card alert' : 'card' },
    ),
    card('next window', s.nextWindowAt ? when(s.nextWindowAt) : 'open or none', { 'data-window': '' }),
    card('started', `${when(s.startedAt)} by ${s.startedBy}`),
  ];
  if (s.paused)
    cards.push(
      card('paused', `by ${s.paused.by} at ${when(s.paused.at)}: ${s.paused.reason}`, {
        class: 'card alert',
        'data-paused': '',
      }),
    );
  if (s.cancelled)
    cards.push(
      card(
        'cancelled',
        `by ${s.cancelled.by} at ${when(s.cancelled.at)}${s.cancelled.reason ? `: ${s.cancelled.reason}` : ''}`,
        {
          class: 'card alert',
        },
      ),
    );
  if (s.message) cards.push(card('message', s.message, { 'data-message': '' }));
  if (s.runs > 0) cards.push(card('runs', `continued as new ${s.runs} times`));

  const byHost = new Map(s.hosts.map((host) => [host.hostId, host]));
  const hostRow = (host) =>
    h(
      'tr',
      { 'data-host': host.hostId },
      h('td', {}, link(hostHref(s.id, host.hostId), host.hostId), sim.has(host.hostId) ? simTag() : null),
      h('td', {}, state(host.fate ?? host.state)),
      h('td', { 'data-step': '' }, host.step ?? '-'),
      h('td', {}, online[host.hostId] === undefined ? 'never seen' : online[host.hostId] ? 'online' : 'offline'),
      h('td', {}, String(host.attempts)),
      h('td', {}, host.error ?? host.waitingFor ?? ''),
    );
  const header = ['host', 'state', 'step', 'presence', 'attempts', 'note'];
  // A rollout started before the wave-running patch marks a wave only pending or done; one whose
  // hosts have started is shown running.
  const waveState = (w) =>
    w.state === 'pending' && w.hosts.some((id) => (byHost.get(id)?.state ?? 'pending') !== 'pending')
      ? 'running'
      : w.state;
  const waves = s.waves.map((w) =>
    h(
      'section',
      { 'data-wave': w.index },
      h('h2', {}, `wave ${w.index}${w.index === 0 ? ' (canary)' : ''} `, state(waveState(w))),
      table(
        header,
        w.hosts
          .map((id) => byHost.get(id))
          .filter(Boolean)
          .map(hostRow),
      ),
    ),
  );
  const unwaved = s.hosts.filter((host) => host.wave < 0);
  const extra = [];
  if (unwaved.length > 0)
    extra.push(h('h2', {}, 'in no wave (offline when targets resolved)'), table(header, unwaved.map(hostRow)));
  if (s.missingHosts.length > 0)
    extra.push(h('h2', {}, 'named but not in the inventory'), h('p', {}, s.missingHosts.join(', ')));
  if (s.excludedHosts.length > 0)
    extra.push(
      h('h2', {}, 'left out by the filter'),
      table(
        ['host', 'reason'],
        s.excludedHosts.map((e) => h('tr', {}, h('td', {}, e.hostId), h('td', {}, e.reason))),
      ),
    );
  return {
    trail: [link('#/', 'rollouts'), h('span', {}, s.id)],
    content: [
      h('h1', {}, `${s.name} `, h('span', { class: 'muted' }, s.id)),
      sim.size > 0
        ? simulatedBanner(
            `SIMULATED: ${sim.size} of ${s.hosts.length} hosts run the sim driver (marked SIMULATED below): nothing on them is real, their steps change only the simulation's model`,
          )
        : null,
      h('div', { class: 'cards' }, cards),
      waves,
      extra,
    ],
  };
}

function diffBlock(lines) {
  return h(
    'pre',
    { class: 'diff' },
    lines.map((l) => {
      const t = l.trimStart();
      const cls = t.startsWith('+') ? 'add' : t.startsWith('-') ? 'del' : undefined;
      return h('span', { class: cls }, `${l}\n`);
    }),
  );
}

function hostPage(v, rolloutId) {
  const steps = v.progress?.steps ?? [];
  const current = v.progress?.current;
  const timeline =
    steps.length === 0
      ? h(
          'p',
          { class: 'muted' },
          v.progress
            ? 'no step started yet'
            : 'no step record from the host workflow (not started, or another rollout now)',
        )
      : h(
          'ol',
          { class: 'steps' },
          steps.map((st) =>
            h(
              'li',
              { class: `s-${st.state}`, 'data-step': st.kind, 'data-step-state': st.state },
              h('strong', {}, `${st.index + 1}. ${st.kind}`),
              st.mode === 'revert' ? ' (revert) ' : ' ',
              state(st.state),
              st.error ? h('div', { class: 'muted' }, st.error) : null,
            ),
          ),
        );
  const events =
    v.events.length === 0
      ? h('p', { class: 'muted' }, 'no audit events for this host yet')
      : table(
          ['at', 'event', 'step', 'actor', 'what'],
          v.events.map((e) =>
            h(
              'tr',
              { 'data-event': e.type },
              h('td', { class: 'nowrap', title: when(e.at) }, clock(e.at)),
              h('td', { class: 'nowrap' }, e.type),
              h('td', {}, e.step ?? '-'),
              h('td', {}, e.actor),
              h('td', {}, e.summary, e.changes.length > 0 ? diffBlock(e.changes) : null),
            ),
          ),
        );
  const presence = v.online === null ? 'never reported' : v.online ? 'online' : 'offline';
  return {
    trail: rolloutId
      ? [link('#/', 'rollouts'), link(rolloutHref(rolloutId), rolloutId), h('span', {}, v.hostId)]
      : [link('#/', 'rollouts'), h('span', {}, v.hostId)],
    content: [
      h('h1', {}, v.hostId, v.simulated ? simTag() : null),
      v.simulated
        ? simulatedBanner(
            "SIMULATED host: its agent runs the sim driver; nothing on it is real, its steps, files and VMs are the simulation's model",
          )
        : null,
      h(
        'div',
        { class: 'cards' },
        card('presence', presence),
        card(
          'current step',
          current ? `${current.index + 1}. ${current.kind}${current.mode === 'revert' ? ' (revert)' : ''}` : 'none',
          {
            'data-current': '',
          },
        ),
      ),
      h('h2', {}, 'steps'),
      timeline,
      h('h2', {}, 'audit events'),
      v.eventsLeftOut > 0
        ? h('p', { class: 'muted' }, `${v.eventsLeftOut} older events left out: refit audit log --host ${v.hostId}`)
        : null,
      events,
    ],
  };
}

// --- routing and polling ---------------------------------------------------------------------

/** The page a location hash names: what to read and how to draw it. */
function route(hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'rollouts' && parts.length === 2)
    return { api: `/api/rollouts/${encodeURIComponent(parts[1])}`, draw: rolloutPage };
  if (parts[0] === 'rollouts' && parts[2] === 'hosts' && parts.length === 4)
    return {
      api: `/api/hosts/${encodeURIComponent(parts[3])}?rollout=${encodeURIComponent(parts[1])}`,
      draw: (v) => hostPage(v, parts[1]),
    };
  if (parts[0] === 'hosts' && parts.length === 2)
    return { api: `/api/hosts/${encodeURIComponent(parts[1])}`, draw: (v) => hostPage(v) };
  return { api: '/api/rollouts', draw: rolloutsPage };
}

let generation = 0;
let timer;

async function refresh(gen, shown) {
  const r = route(location.hash);
  let text;
  try {
    text = JSON.stringify(await getJson(r.api));
    if (gen !== generation) return;
    if (text !== shown) {
      const view = r.draw(JSON.parse(text));
      trail.replaceChildren(...view.trail);
      page.replaceChildren(...view.content.flat().filter((c) => c !== null && c !== undefined));
    }
    updated.replaceChildren(`updated ${new Date().toLocaleTimeString()} · every ${POLL_MS / 1000} s`);
  } catch (err) {
    if (gen !== generation) return;
    updated.replaceChildren(h('span', { class: 'error' }, `cannot read ${r.api}: ${err.message}; retrying`));
    text = shown;
  }
  document.body.dataset.loaded = String(gen);
  timer = setTimeout(() => void refresh(gen, text), POLL_MS);
}

function start() {
  clearTimeout(timer);
  generation++;
  delete document.body.dataset.loaded;
  page.replaceChildren(h('p', { class: 'muted' }, 'loading…'));
  void refresh(generation, undefined);
}

window.addEventListener('hashchange', start);
start();
