// The event browser: a page of plain DOM over the HTTP API (/v1/*), no framework and no build
// step, so it ships in the package as it is and works offline. Every value from the store is
// put into the page as text (never as HTML): event data is whatever the writers wrote.

const PAGE = 50;
const TOKEN_KEY = 'dses-token';

// ---------------------------------------------------------------------------------------------
// DOM helpers

/** An element with attributes (on* as listeners) and children (strings become text nodes). */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'className') element.className = value;
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  for (const child of children.flat()) element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return element;
}

const main = () => document.getElementById('main');

function showError(error) {
  const status = document.getElementById('status');
  status.replaceChildren();
  if (!error) {
    status.hidden = true;
    return;
  }
  const code = error.code ? h('code', {}, error.code) : null;
  status.append(code ?? '', code ? ': ' : '', error.message ?? String(error));
  status.hidden = false;
}

function formatTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toISOString().replace('T', ' ').replace('Z', '');
}

function preview(data) {
  const text = JSON.stringify(data);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

function tagLink(tag) {
  return h('a', { className: 'tag', href: `#/?tags=${encodeURIComponent(tag)}`, title: `every event tagged ${tag}` }, tag);
}

function copyButton(text, label) {
  const button = h('button', { type: 'button', className: 'secondary', 'aria-label': label }, 'Copy');
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text());
      button.textContent = 'Copied';
    } catch {
      button.textContent = 'Select and copy by hand';
    }
    setTimeout(() => (button.textContent = 'Copy'), 1500);
  });
  return button;
}

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code ?? `HTTP_${status}`;
  }
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { authorization: `Bearer ${token}` } : {};
}

async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { ...authHeaders(), ...(body !== undefined && { 'content-type': 'application/json' }) };
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  const text = await response.text();
  const json = text === '' ? undefined : JSON.parse(text);
  if (response.status === 401) {
    askForToken('This server needs a token.');
    throw new ApiError(401, json);
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

function queryJson(items) {
  return { items };
}

function readEvents(query, options = {}) {
  return api('/v1/read', { method: 'POST', body: { query, ...options } });
}

/**
 * The events matching `query` after `after`, then each new one, through /v1/subscribe (SSE over
 * fetch, which can send the Authorization header that EventSource cannot). Resumes after the
 * last event seen when the connection drops; ends when `signal` aborts.
 */
async function follow(query, after, onEvent, signal, onOpen = () => undefined) {
  let last = after;
  while (!signal.aborted) {
    try {
      const url = `/v1/subscribe?query=${encodeURIComponent(JSON.stringify(query))}&after=${last}`;
      const response = await fetch(url, { headers: { ...authHeaders(), accept: 'text/event-stream' }, signal });
      if (response.status === 401) {
        askForToken('This server needs a token.');
        return;
      }
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => undefined));
      onOpen(true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let data = '';
          let kind = 'message';
          for (const line of message.split('\n')) {
            if (line.startsWith('data:')) data += line.slice(5).trimStart();
            else if (line.startsWith('event:')) kind = line.slice(6).trim();
          }
          if (data === '') continue;
          if (kind === 'error') throw new ApiError(500, JSON.parse(data));
          const event = JSON.parse(data);
          last = event.position;
          onEvent(event);
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      showError(error);
    }
    onOpen(false);
    // Dropped: reconnect after a moment, after the last event seen (nothing skipped, nothing twice).
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

// ---------------------------------------------------------------------------------------------
// Token

function askForToken(reason) {
  const dialog = document.getElementById('token-dialog');
  document.getElementById('token-reason').textContent = reason;
  if (!dialog.open) dialog.showModal();
}

function setUpToken() {
  const dialog = document.getElementById('token-dialog');
  document.getElementById('token-button').addEventListener('click', () => askForToken('Give the token of this server (the read token only lets you look).'));
  dialog.addEventListener('close', () => {
    const input = document.getElementById('token-input');
    if (dialog.returnValue === 'save' && input.value.trim() !== '') sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    if (dialog.returnValue === 'clear') sessionStorage.removeItem(TOKEN_KEY);
    input.value = '';
    if (dialog.returnValue !== 'cancel') route();
  });
}

// ---------------------------------------------------------------------------------------------
// Views. Each gets the route's parameters and an AbortSignal that fires when the view is left.

function eventRow(event, isNew = false) {
  return h(
    'tr',
    { className: isNew ? 'new' : undefined, 'data-position': event.position },
    h('td', { className: 'position' }, h('a', { href: `#/event/${event.position}` }, event.position)),
    h('td', { className: 'time' }, h('time', { datetime: event.recordedAt }, formatTime(event.recordedAt))),
    h('td', { className: 'type' }, event.type),
    h('td', { className: 'tags' }, event.tags.map(tagLink)),
    h('td', { className: 'data', title: preview(event.data) }, preview(event.data)),
  );
}

function eventTable(caption) {
  const body = h('tbody');
  const table = h(
    'table',
    { 'aria-label': caption },
    h('thead', {}, h('tr', {}, ['Position', 'Recorded (UTC)', 'Type', 'Tags', 'Data'].map((name) => h('th', { scope: 'col' }, name)))),
    body,
  );
  return { table, body };
}

function splitList(text) {
  return (text ?? '').split(',').map((part) => part.trim()).filter((part) => part !== '');
}

/** The log, newest first: filter by types and tags, page back, and tail live. */
async function logView(params, signal) {
  const types = splitList(params.get('types'));
  const tags = splitList(params.get('tags'));
  const item = {};
  if (types.length > 0) item.types = types;
  if (tags.length > 0) item.tags = tags;
  const filtered = types.length > 0 || tags.length > 0;
  const query = queryJson(filtered ? [item] : []);

  const typesInput = h('input', { id: 'filter-types', name: 'types', value: types.join(', '), placeholder: 'BookLent, BookReturned' });
  const tagsInput = h('input', { id: 'filter-tags', name: 'tags', value: tags.join(', '), placeholder: 'book:b1' });
  const live = h('input', { type: 'checkbox', id: 'live' });
  const liveLabel = h('label', { for: 'live' }, 'Live tail');
  const form = h(
    'form',
    { className: 'toolbar', role: 'search', 'aria-label': 'Filter the log' },
    h('div', { className: 'field' }, h('label', { for: 'filter-types' }, 'Types (any of, comma separated)'), typesInput),
    h('div', { className: 'field' }, h('label', { for: 'filter-tags' }, 'Tags (all of, comma separated)'), tagsInput),
    h('button', { type: 'submit' }, 'Filter'),
    filtered ? h('a', { href: '#/' }, 'Clear filter') : null,
    h('div', { className: 'check' }, live, liveLabel),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (typesInput.value.trim()) next.set('types', typesInput.value.trim());
    if (tagsInput.value.trim()) next.set('tags', tagsInput.value.trim());
    location.hash = `#/${next.size > 0 ? `?${next}` : ''}`;
  });

  const { table, body } = eventTable(filtered ? 'Matching events, newest first' : 'Events, newest first');
  const summary = h('span', { id: 'log-summary', 'aria-live': 'polite' });
  const older = h('button', { type: 'button', className: 'secondary', id: 'older' }, 'Older events');
  main().replaceChildren(h('h2', {}, filtered ? 'Events matching the filter' : 'The log'), form, table, h('div', { className: 'pager' }, older, summary));

  let shown = [];
  const render = () => {
    summary.textContent = shown.length === 0 ? 'no events' : `showing ${shown.length} event${shown.length === 1 ? '' : 's'}, positions ${shown.at(-1).position} to ${shown[0].position}`;
  };
  const first = await readEvents(query, { backwards: true, limit: PAGE });
  if (signal.aborted) return;
  setHead(first.head);
  shown = first.events;
  body.replaceChildren(...shown.map((event) => eventRow(event)));
  if (shown.length === 0) body.append(h('tr', {}, h('td', { colspan: 5, className: 'empty' }, filtered ? 'No event matches.' : 'The store has no events yet.')));
  older.disabled = shown.length < PAGE;
  render();
  let head = BigInt(first.head);

  older.addEventListener('click', async () => {
    older.disabled = true;
    try {
      // The PAGE newest events below the oldest shown: the same read at any depth, filtered or
      // not, and unaffected by events the live tail added on top.
      const oldest = shown.at(-1).position;
      const page = (await readEvents(query, { before: oldest, backwards: true, limit: PAGE })).events;
      shown = shown.concat(page);
      body.append(...page.map((event) => eventRow(event)));
      older.disabled = page.length < PAGE;
      render();
    } catch (error) {
      showError(error);
      older.disabled = false;
    }
  });

  let tail;
  live.addEventListener('change', () => {
    tail?.abort();
    tail = undefined;
    delete live.dataset.connected;
    liveLabel.textContent = 'Live tail';
    if (!live.checked) return;
    tail = new AbortController();
    signal.addEventListener('abort', () => tail?.abort());
    void follow(query, head.toString(), (event) => {
      if (BigInt(event.position) <= head && shown.some((seen) => seen.position === event.position)) return;
      head = BigInt(event.position) > head ? BigInt(event.position) : head;
      setHead(event.position);
      shown.unshift(event);
      body.querySelector('td.empty')?.parentElement?.remove();
      body.prepend(eventRow(event, true));
      render();
    }, tail.signal, (open) => {
      // For the eye (and the tests): whether the live stream is connected.
      live.dataset.connected = String(open);
      liveLabel.textContent = open ? 'Live tail (connected)' : 'Live tail (reconnecting…)';
    });
  });
}

/** One event: every field, data and metadata as formatted JSON, tags as links. */
async function eventView(position, signal) {
  if (!/^[1-9]\d*$/.test(position)) throw new ApiError(400, { error: { code: 'INVALID_INPUT', message: `not a position: ${position}` } });
  const { events, head } = await readEvents(queryJson([]), { after: (BigInt(position) - 1n).toString(), limit: 1 });
  if (signal.aborted) return;
  setHead(head);
  const event = events[0];
  if (!event || event.position !== position) {
    main().replaceChildren(h('h2', {}, `No event at position ${position}`), h('p', {}, `The head is ${head}.`), h('a', { href: '#/' }, 'Back to the log'));
    return;
  }
  const previous = BigInt(position) > 1n ? h('a', { href: `#/event/${BigInt(position) - 1n}` }, '← previous') : null;
  const next = BigInt(position) < BigInt(head) ? h('a', { href: `#/event/${BigInt(position) + 1n}` }, 'next →') : null;
  main().replaceChildren(
    h('h2', {}, `Event ${event.position}: ${event.type}`),
    h('p', { className: 'pager' }, previous, next, h('a', { href: '#/' }, 'the log')),
    h(
      'dl',
      { className: 'fields', 'aria-label': 'Event fields' },
      h('dt', {}, 'position'), h('dd', {}, event.position),
      h('dt', {}, 'id'), h('dd', {}, event.id),
      h('dt', {}, 'type'), h('dd', {}, h('a', { href: `#/?types=${encodeURIComponent(event.type)}` }, event.type)),
      h('dt', {}, 'tags'), h('dd', {}, event.tags.length === 0 ? '(none)' : event.tags.map(tagLink)),
      h('dt', {}, 'occurredAt'), h('dd', {}, event.occurredAt),
      h('dt', {}, 'recordedAt'), h('dd', {}, event.recordedAt),
    ),
    h(
      'div',
      { className: 'columns' },
      h('section', { 'aria-labelledby': 'data-title' }, h('h3', { id: 'data-title' }, 'data'), h('pre', { className: 'json', id: 'event-data' }, JSON.stringify(event.data, null, 2))),
      h('section', { 'aria-labelledby': 'metadata-title' }, h('h3', { id: 'metadata-title' }, 'metadata'), h('pre', { className: 'json', id: 'event-metadata' }, JSON.stringify(event.metadata, null, 2))),
    ),
  );
}

/**
 * The query builder and the decision view: OR'ed items of types, tags and payload predicates,
 * a time range; the DCB JSON; the matching events, the head, and the append condition a decision
 * on them would use.
 */
async function queryView(params, signal) {
  let initial = { items: [{}] };
  const given = params.get('q');
  if (given) {
    try {
      initial = JSON.parse(given);
    } catch {
      showError(new Error('the query in the address is not valid JSON'));
    }
  }
  const itemsBox = h('div', { id: 'items' });
  const json = h('pre', { className: 'json', id: 'query-json', 'aria-live': 'polite' });
  const from = h('input', { type: 'datetime-local', id: 'occurred-from', step: 1 });
  const until = h('input', { type: 'datetime-local', id: 'occurred-until', step: 1 });
  if (initial.occurredFrom) from.value = initial.occurredFrom.slice(0, 19);
  if (initial.occurredUntil) until.value = initial.occurredUntil.slice(0, 19);
  const results = h('section', { id: 'decision', 'aria-live': 'polite' });
  let counter = 0;

  const readItem = (box) => {
    const item = {};
    const types = splitList(box.querySelector('[name=types]').value);
    const tags = splitList(box.querySelector('[name=tags]').value);
    const predicates = box.querySelector('[name=predicates]').value.trim();
    if (types.length > 0) item.types = types;
    if (tags.length > 0) item.tags = tags;
    if (predicates !== '') {
      const parsed = predicates.split('\n').filter((line) => line.trim() !== '').map((line, index) => {
        try {
          return JSON.parse(line);
        } catch {
          throw new Error(`payload predicate ${index + 1} is not valid JSON: ${line}`);
        }
      });
      item.anyPredicateOf = parsed;
    }
    return item;
  };
  const build = () => {
    const query = { items: [...itemsBox.querySelectorAll('.item')].map(readItem) };
    // An item with nothing in it matches every event: the query for all events is `items: []`.
    if (query.items.some((item) => Object.keys(item).length === 0)) query.items = [];
    if (from.value) query.occurredFrom = new Date(`${from.value}Z`).toISOString();
    if (until.value) query.occurredUntil = new Date(`${until.value}Z`).toISOString();
    return query;
  };
  const refresh = () => {
    try {
      json.textContent = JSON.stringify(build(), null, 2);
    } catch (error) {
      json.textContent = `(${error.message})`;
    }
  };
  const addItem = (item = {}) => {
    counter += 1;
    const id = `item-${counter}`;
    const box = h(
      'fieldset',
      { className: 'item', id },
      h('legend', { className: 'item-head' }, `Item ${counter}`),
      h(
        'div',
        { className: 'fields3' },
        h('div', {}, h('label', { for: `${id}-types` }, 'Types (any of)'), h('input', { id: `${id}-types`, name: 'types', value: (item.types ?? []).join(', '), placeholder: 'BookLent' })),
        h('div', {}, h('label', { for: `${id}-tags` }, 'Tags (all of)'), h('input', { id: `${id}-tags`, name: 'tags', value: (item.tags ?? []).join(', '), placeholder: 'book:b1' })),
        h(
          'div',
          {},
          h('label', { for: `${id}-predicates` }, 'Payload contains (one JSON object per line, any of)'),
          h('textarea', { id: `${id}-predicates`, name: 'predicates', rows: 2, placeholder: '{"readerId":"r1"}' }, (item.anyPredicateOf ?? []).map((predicate) => JSON.stringify(predicate)).join('\n')),
        ),
      ),
      h('button', { type: 'button', className: 'secondary', onclick: () => { box.remove(); refresh(); } }, `Remove item ${counter}`),
    );
    box.addEventListener('input', refresh);
    itemsBox.append(box, h('p', { className: 'or', 'aria-hidden': 'true' }, 'or'));
    refresh();
  };
  for (const item of initial.items.length > 0 ? initial.items : [{}]) addItem(item);

  const form = h(
    'form',
    { 'aria-label': 'Query builder' },
    itemsBox,
    h('button', { type: 'button', className: 'secondary', id: 'add-item', onclick: () => addItem() }, 'Add an item (OR)'),
    h('div', { className: 'range' },
      h('div', {}, h('label', { for: 'occurred-from' }, 'Occurred from (UTC)'), from),
      h('div', {}, h('label', { for: 'occurred-until' }, 'Occurred until (UTC)'), until)),
    h('div', { className: 'copy-row' }, h('h3', {}, 'The query as DCB JSON'), copyButton(() => json.textContent, 'Copy the query JSON')),
    json,
    h('p', {}, h('button', { type: 'submit', id: 'run-query' }, 'Show the decision')),
  );
  form.addEventListener('input', refresh);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    try {
      location.hash = `#/query?q=${encodeURIComponent(JSON.stringify(build()))}`;
    } catch (error) {
      showError(error);
    }
  });
  main().replaceChildren(h('h2', {}, 'Query and decision'), form, results);
  if (!given) return;

  // The decision view: what a command deciding on this query reads, and the condition its append carries.
  const query = build();
  const { events, head } = await readEvents(query, { limit: 1000 });
  if (signal.aborted) return;
  setHead(head);
  const condition = { failIfEventsMatch: query, after: head };
  const conditionText = JSON.stringify(condition, null, 2);
  const { table, body } = eventTable('The events the decision reads');
  body.append(...events.map((event) => eventRow(event)));
  if (events.length === 0) body.append(h('tr', {}, h('td', { colspan: 5, className: 'empty' }, 'No event matches: a decision sees an empty history.')));
  results.replaceChildren(
    h(
      'div',
      { className: 'decision' },
      h('h3', {}, 'Decision'),
      h('p', { id: 'decision-summary' }, `${events.length === 1000 ? 'The first 1000' : events.length} matching event${events.length === 1 ? '' : 's'}, read at head `, h('strong', { id: 'decision-head' }, head), '.'),
      h('p', {}, `An append deciding on them carries this condition: it fails if an event matching the query was appended after position ${head}, and is written atomically otherwise.`),
      h('div', { className: 'copy-row' }, h('h3', {}, 'Append condition'), copyButton(() => conditionText, 'Copy the append condition')),
      h('pre', { className: 'json', id: 'condition-json' }, conditionText),
    ),
    table,
  );
}

/** The durable consumers: position, lag, state, last error; reset with the write token. */
async function consumersView(_params, signal) {
  const { consumers } = await api('/v1/consumers', { signal });
  if (signal.aborted) return;
  const body = h('tbody');
  for (const consumer of consumers) {
    const to = h('input', { type: 'number', min: 0, value: 0, id: `reset-${consumer.name}`, 'aria-label': `reset ${consumer.name} to position` });
    const reset = h('button', { type: 'button', className: 'secondary' }, 'Reset');
    reset.addEventListener('click', async () => {
      if (!confirm(`Move consumer ${consumer.name} to position ${to.value}? Its handler will see the events after it again.`)) return;
      try {
        await api(`/v1/consumers/${encodeURIComponent(consumer.name)}/reset`, { method: 'POST', body: { position: String(to.value || 0) } });
        showError(undefined);
        route();
      } catch (error) {
        showError(error.status === 403 ? new ApiError(403, { error: { code: error.code, message: `${error.message} (a reset needs the write token)` } }) : error);
      }
    });
    body.append(
      h(
        'tr',
        { 'data-consumer': consumer.name },
        h('td', {}, consumer.name),
        h('td', { className: 'position' }, consumer.position),
        h('td', { className: 'position lag' }, consumer.lag),
        h('td', { className: `state-${consumer.state}` }, consumer.state),
        h('td', {}, consumer.owner ?? '–'),
        h('td', { className: 'error' }, consumer.lastError ? `${consumer.lastError}${consumer.failedPosition ? ` (at ${consumer.failedPosition})` : ''}` : '–'),
        h('td', {}, h('div', { className: 'reset' }, h('label', { for: `reset-${consumer.name}`, className: 'visually-hidden' }, 'to'), to, reset)),
      ),
    );
  }
  if (consumers.length === 0) body.append(h('tr', {}, h('td', { colspan: 7, className: 'empty' }, 'No durable consumers in this store.')));
  main().replaceChildren(
    h('h2', {}, 'Consumers'),
    h('table', { 'aria-label': 'Durable consumers' }, h('thead', {}, h('tr', {}, ['Name', 'Position', 'Lag', 'State', 'Owner', 'Last error', 'Reset to'].map((name) => h('th', { scope: 'col' }, name)))), body),
  );
}

/** A horizontal bar chart: one labelled bar per row. */
function barChart(rows, label) {
  const max = Math.max(1, ...rows.map((row) => row.value));
  const height = 24 * rows.length + 8;
  const chart = svg('svg', { width: '100%', height, viewBox: `0 0 800 ${height}`, preserveAspectRatio: 'xMinYMin meet', role: 'img', 'aria-label': label });
  rows.forEach((row, index) => {
    const y = 4 + index * 24;
    const width = Math.max(1, (560 * row.value) / max);
    chart.append(
      svg('text', { x: 0, y: y + 15 }, row.label.length > 28 ? `${row.label.slice(0, 27)}…` : row.label),
      svg('rect', { class: 'bar', x: 200, y, width, height: 18 }, svg('title', {}, `${row.label}: ${row.value}`)),
      svg('text', { x: 206 + width, y: y + 15, class: 'axis' }, String(row.value)),
    );
  });
  return chart;
}

/** Columns over time: the events recorded in each minute. */
function timelineChart(timeline) {
  const max = Math.max(1, ...timeline.map((entry) => Number(entry.events)));
  const chart = svg('svg', { width: '100%', height: 200, viewBox: '0 0 800 200', preserveAspectRatio: 'xMinYMin meet', role: 'img', 'aria-label': 'Events appended per minute over the last hour' });
  const step = 760 / timeline.length;
  timeline.forEach((entry, index) => {
    const value = Number(entry.events);
    const height = (150 * value) / max;
    chart.append(svg('rect', { class: 'bar', x: 36 + index * step, y: 165 - height, width: Math.max(1, step - 2), height: Math.max(value > 0 ? 1 : 0, height) }, svg('title', {}, `${formatTime(entry.minute).slice(0, 16)}: ${value} events`)));
  });
  chart.append(
    svg('text', { x: 0, y: 20, class: 'axis' }, String(max)),
    svg('text', { x: 0, y: 165, class: 'axis' }, '0'),
    svg('text', { x: 36, y: 190, class: 'axis' }, timeline.length > 0 ? formatTime(timeline[0].minute).slice(11, 16) : ''),
    svg('text', { x: 740, y: 190, class: 'axis' }, timeline.length > 0 ? formatTime(timeline.at(-1).minute).slice(11, 16) : ''),
  );
  return chart;
}

function bytes(value) {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let size = Number(value);
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${size.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** Events by type as a bar chart, the append rate over time, the most frequent tags. */
async function statsView(_params, signal) {
  const stats = await api('/v1/stats', { signal });
  if (signal.aborted) return;
  setHead(stats.head);
  const card = (label, value, id) => h('div', { className: 'card' }, h('div', { className: 'value', id }, value), h('div', { className: 'label' }, label));
  main().replaceChildren(
    h('h2', {}, 'Stats'),
    h(
      'div',
      { className: 'cards' },
      card('events', stats.events, 'stat-events'),
      card('head', stats.head, 'stat-head'),
      card('on disk', bytes(stats.size?.totalBytes ?? 0), 'stat-size'),
      ...(stats.rates ?? []).map((rate) => card(`per minute, last ${rate.minutes} min`, rate.perMinute.toFixed(1))),
    ),
    h('figure', { id: 'types-chart' }, h('figcaption', {}, 'Events by type'), barChart((stats.types ?? []).map((row) => ({ label: row.type, value: Number(row.events) })), 'Events by type')),
    stats.timeline ? h('figure', { id: 'rate-chart' }, h('figcaption', {}, 'Appended per minute, last hour (UTC)'), timelineChart(stats.timeline)) : null,
    h(
      'figure',
      {},
      h('figcaption', {}, stats.tagSample?.sampled ? `Most frequent tags (estimated from a ${stats.tagSample.percent.toFixed(2)}% sample)` : 'Most frequent tags'),
      h('p', {}, (stats.tags ?? []).map((row) => h('span', {}, tagLink(row.tag), ` ${row.events}  `))),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Routing: #/ (log, ?types=&tags=), #/event/N, #/query?q=, #/consumers, #/stats

function setHead(head) {
  const output = document.getElementById('head');
  if (output.value === '' || output.value === '…' || BigInt(head) >= BigInt(output.value)) output.value = String(head);
}

let current;

async function route() {
  current?.abort();
  current = new AbortController();
  const { signal } = current;
  showError(undefined);
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, search] = hash.split('?');
  const params = new URLSearchParams(search ?? '');
  const view = path.startsWith('/event/') ? 'log' : path === '/' ? 'log' : path.slice(1);
  for (const link of document.querySelectorAll('nav a')) {
    if (link.dataset.view === view) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  try {
    if (path.startsWith('/event/')) await eventView(path.slice('/event/'.length), signal);
    else if (path === '/query') await queryView(params, signal);
    else if (path === '/consumers') await consumersView(params, signal);
    else if (path === '/stats') await statsView(params, signal);
    else await logView(params, signal);
  } catch (error) {
    if (!signal.aborted) showError(error);
  }
}

setUpToken();
window.addEventListener('hashchange', route);
void route();
void api('/v1/head').then(({ head }) => setHead(head)).catch(() => undefined);
