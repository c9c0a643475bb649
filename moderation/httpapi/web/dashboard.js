// danmaku moderation dashboard. Talks to the HTTP API with the moderator's
// token in the Authorization header (the token stays in sessionStorage; no
// cookies) and watches the room over the gateway's WebSocket. Every piece of
// user-supplied text is rendered with textContent.
'use strict';

(() => {
  const FEED_MAX = 500;
  const HELD_POLL_MS = 2000;
  const AUDIT_POLL_MS = 10000;
  const CHART_SECONDS = 60;
  const ANALYTICS_POLL_MS = 30000;

  const $ = (id) => document.getElementById(id);

  const state = {
    token: '',
    room: '',
    ws: null,
    wsGen: 0,
    rows: new Map(), // seq → <li>
    heldRows: new Map(), // held id → <li> in the feed
    buckets: new Array(CHART_SECONDS).fill(0), // messages per second, oldest first
    current: 0, // messages in the running second
    timers: [],
    retry: 500,
    settings: {}, // as last loaded, so fields without a form input keep their values
    card: '', // uid of the open user card
  };

  // el builds an element; text goes through textContent only.
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function button(label, cls, testid, onClick) {
    const b = el('button', 'small ' + (cls || ''), label);
    b.type = 'button';
    if (testid) b.dataset.testid = testid;
    b.addEventListener('click', (ev) => { ev.stopPropagation(); onClick(b); });
    return b;
  }

  let toastTimer = 0;
  function toast(msg, isError) {
    const t = $('toast');
    t.textContent = msg;
    t.className = isError ? 'error' : '';
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 4000);
  }

  function setStatus(msg, isError) {
    const s = $('status');
    s.textContent = msg;
    s.className = isError ? 'error' : '';
  }

  // api calls /api/rooms/{room}{path}; it resolves to the parsed body (null
  // for 204) and rejects with the API's error message.
  async function api(method, path, body) {
    const opts = { method, headers: { Authorization: 'Bearer ' + state.token }, credentials: 'omit', cache: 'no-store' };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const res = await fetch('/api/rooms/' + encodeURIComponent(state.room) + path, opts);
    if (res.status === 204) return null;
    let data = null;
    try { data = await res.json(); } catch (_) { /* not JSON */ }
    if (!res.ok) {
      const e = data && data.error ? data.error : { code: String(res.status), message: res.statusText };
      const err = new Error(e.code + ': ' + e.message);
      err.status = res.status;
      if (res.status === 401) setStatus('token rejected: ' + e.message, true);
      throw err;
    }
    return data;
  }

  async function act(label, fn) {
    try {
      await fn();
      toast(label);
      refreshAudit();
    } catch (e) {
      toast(label + ' failed: ' + e.message, true);
    }
  }

  // ---- live feed -----------------------------------------------------------

  function addRow(li, top) {
    const feed = $('feed');
    const stick = feed.scrollTop + feed.clientHeight >= feed.scrollHeight - 30;
    if (top) feed.prepend(li); else feed.append(li);
    while (feed.children.length > FEED_MAX) {
      const old = feed.firstElementChild;
      if (old.dataset.seq) state.rows.delete(Number(old.dataset.seq));
      if (old.dataset.heldId) state.heldRows.delete(old.dataset.heldId);
      old.remove();
    }
    if (stick) feed.scrollTop = feed.scrollHeight;
  }

  // userActions are a feed row's buttons: delete (when the row has a seq)
  // and ban… (a dialog asks for the duration and a reason). Service
  // accounts (bots) publish as trusted: banning one would not stop it, so
  // no ban is offered; revoke its token instead.
  function userActions(uid, seq, name, role) {
    const box = el('span', 'actions');
    if (seq) {
      box.append(button('delete', 'danger', 'delete', () =>
        act('deleted #' + seq, () => api('DELETE', '/messages/' + seq))));
    }
    if (role === 'service') {
      const note = el('span', 'bot-note', 'bot: not bannable');
      note.title = 'A service account publishes as trusted; a ban would not stop it. Revoke its token instead.';
      note.dataset.testid = 'bot-note';
      box.append(note);
    } else {
      box.append(button('ban…', 'danger', 'ban', () => openBan({ uid, name })));
    }
    return box;
  }

  function roleBadge(role) {
    const b = el('span', 'badge role', role === 'service' ? 'bot' : role);
    b.dataset.role = role;
    return b;
  }

  function nameLink(name, uid) {
    const n = el('span', 'name', name || uid);
    n.title = uid + ' (open the user card)';
    n.dataset.testid = 'name';
    n.addEventListener('click', () => openUser(uid));
    return n;
  }

  function messageRow(m) {
    const li = el('li', 'msg');
    li.dataset.seq = m.seq;
    li.dataset.uid = m.uid;
    li.dataset.testid = 'msg';
    li.append(el('span', 'seq', '#' + m.seq), nameLink(m.name, m.uid));
    if (m.role) li.append(roleBadge(m.role));
    li.append(el('span', 'text', m.text));
    li.append(userActions(m.uid, m.seq, m.name, m.role));
    if (m.deleted) li.classList.add('deleted');
    return li;
  }

  function addMessages(msgs, counted) {
    for (const m of msgs || []) {
      if (state.rows.has(m.seq)) continue;
      const li = messageRow(m);
      state.rows.set(m.seq, li);
      addRow(li);
      if (counted) state.current++;
    }
  }

  function markDeleted(li) {
    li.classList.add('deleted');
    li.dataset.deleted = 'true';
  }

  function notice(text) {
    const li = el('li', 'notice');
    li.append(el('span', 'seq', '—'), el('span', 'text', text));
    addRow(li);
  }

  function onFrame(f) {
    switch (f.op) {
      case 'joined':
        $('online').textContent = f.online;
        setStatus('watching ' + f.room + ' (seq ' + f.seq + ')');
        state.retry = 500;
        break;
      case 'history':
        addMessages(f.msgs, false);
        break;
      case 'batch':
        addMessages(f.msgs, true);
        break;
      case 'delete':
        for (const seq of f.seqs || []) {
          const li = state.rows.get(seq);
          if (li) markDeleted(li);
        }
        break;
      case 'purge':
        for (const li of state.rows.values()) if (li.dataset.uid === f.uid) markDeleted(li);
        notice('messages of ' + f.uid + ' retracted');
        break;
      case 'online':
        $('online').textContent = f.count;
        break;
      case 'notice':
        notice(f.text);
        break;
      case 'reconnect':
        setStatus('server asked to reconnect');
        break;
      case 'kicked':
        setStatus('kicked: ' + (f.reason || ''), true);
        break;
      case 'error':
        setStatus('server error: ' + f.code + ' ' + (f.message || ''), true);
        break;
    }
  }

  async function connectWS() {
    const gen = ++state.wsGen;
    let cfg = { ws_port: 0, ws_path: '/ws' };
    try {
      const res = await fetch('/api/config', { credentials: 'omit', cache: 'no-store' });
      cfg = await res.json();
    } catch (_) { /* keep the defaults */ }
    if (gen !== state.wsGen) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    // location.hostname keeps the brackets of an IPv6 literal ("[::1]").
    const h = location.hostname;
    const host = h.includes(':') && !h.startsWith('[') ? '[' + h + ']' : h;
    const port = cfg.ws_port || location.port;
    // observe=1: this connection watches as a moderator and is not counted
    // as a viewer in the room's online count.
    const url = scheme + '://' + host + (port ? ':' + port : '') + (cfg.ws_path || '/ws') +
      '?room=' + encodeURIComponent(state.room) + '&observe=1&token=' + encodeURIComponent(state.token);
    const ws = new WebSocket(url);
    state.ws = ws;
    ws.addEventListener('message', (ev) => {
      let f;
      try { f = JSON.parse(ev.data); } catch (_) { return; }
      onFrame(f);
    });
    ws.addEventListener('close', (ev) => {
      if (gen !== state.wsGen) return;
      setStatus('feed disconnected (' + ev.code + '), retrying…', ev.code !== 1001);
      const wait = state.retry;
      state.retry = Math.min(state.retry * 2, 10000);
      setTimeout(() => { if (gen === state.wsGen) connectWS(); }, wait + Math.random() * 250);
    });
  }

  // ---- messages-per-second chart ---------------------------------------------

  function tick() {
    state.buckets.shift();
    state.buckets.push(state.current);
    $('rate').textContent = state.current;
    state.current = 0;
    drawChart();
  }

  function drawChart() {
    const c = $('chart');
    const g = c.getContext('2d');
    const w = c.width, h = c.height;
    g.clearRect(0, 0, w, h);
    const peak = Math.max(1, ...state.buckets);
    const bw = w / CHART_SECONDS;
    g.fillStyle = '#4fa3ff';
    state.buckets.forEach((n, i) => {
      const bh = Math.round((n / peak) * (h - 4));
      g.fillRect(i * bw, h - bh, Math.max(1, bw - 1), bh);
    });
    g.fillStyle = '#8b94a3';
    g.font = '10px system-ui, sans-serif';
    g.fillText('peak ' + peak, 3, 11);
  }

  // ---- held queue ----------------------------------------------------------

  function heldActions(h) {
    const box = el('span', 'actions');
    const resolve = (verb, done) => act(done + ' held message of ' + (h.name || h.uid), async () => {
      await api('POST', '/held/' + encodeURIComponent(h.id) + '/' + verb);
      dropHeld(h.id);
    });
    box.append(button('approve', 'ok', 'approve', () => resolve('approve', 'approved')));
    box.append(button('reject', 'danger', 'reject', () => resolve('reject', 'rejected')));
    return box;
  }

  function dropHeld(id) {
    const li = state.heldRows.get(id);
    if (li) li.remove();
    state.heldRows.delete(id);
    const side = $('held').querySelector('[data-held-id="' + CSS.escape(id) + '"]');
    if (side) side.remove();
    $('held-count').textContent = $('held').children.length;
  }

  function heldRow(h, inFeed) {
    const li = el('li', 'held');
    li.dataset.heldId = h.id;
    li.dataset.uid = h.uid;
    li.dataset.testid = inFeed ? 'feed-held' : 'held-item';
    const badge = el('span', 'badge', 'held: ' + (h.rule || 'review'));
    if (inFeed) {
      li.append(badge, nameLink(h.name, h.uid), el('span', 'text', h.text), heldActions(h));
      li.lastChild.append(...userActions(h.uid, 0, h.name).children);
      return li;
    }
    // A card in the side panel: who and why, the text on full lines, then
    // the buttons.
    const meta = el('div', 'meta');
    meta.append(badge, el('span', 'name', h.name || h.uid), el('span', 'uid', h.uid));
    if (h.ts) meta.append(el('span', 'uid', new Date(h.ts).toLocaleTimeString()));
    const box = heldActions(h);
    box.append(...userActions(h.uid, 0, h.name).children);
    li.append(meta, el('div', 'text', h.text), box);
    return li;
  }

  async function refreshHeld() {
    let data;
    try { data = await api('GET', '/held'); } catch (_) { return; }
    const list = data.held || [];
    const live = new Set(list.map((h) => h.id));
    const side = $('held');
    side.replaceChildren(...list.map((h) => heldRow(h, false)));
    $('held-count').textContent = list.length;
    for (const h of list) {
      if (!state.heldRows.has(h.id)) {
        const li = heldRow(h, true);
        state.heldRows.set(h.id, li);
        addRow(li);
      }
    }
    for (const [id, li] of state.heldRows) {
      if (!live.has(id)) { li.remove(); state.heldRows.delete(id); }
    }
  }

  // ---- configuration -------------------------------------------------------

  async function loadKeywords() {
    const k = await api('GET', '/keywords');
    $('keywords').value = (k.keywords || []).join('\n');
    $('kw-action').value = k.action || 'block';
  }

  async function loadSettings() {
    const s = await api('GET', '/settings');
    state.settings = s;
    $('s-slow').value = s.slow_mode_sec;
    $('s-maxlen').value = s.max_length;
    $('s-rate').value = s.rate_per_sec;
    $('s-burst').value = s.burst;
    $('s-links').value = s.link_policy || 'allow';
    $('s-allow').value = (s.link_allow || []).join(', ');
    $('s-hold').value = s.hold_threshold;
    $('s-budget').value = s.display_budget || 0;
    $('s-modes').value = s.mode_policy || 'privileged';
    $('s-sizes').value = s.size_policy || 'all';
  }

  async function refreshBans() {
    let data;
    try { data = await api('GET', '/bans'); } catch (_) { return; }
    const items = (data.bans || []).map((b) => {
      const li = el('li');
      li.dataset.uid = b.uid;
      li.dataset.testid = 'ban';
      const until = b.until ? 'until ' + new Date(b.until).toLocaleString() : 'permanent';
      const meta = el('div', 'meta');
      meta.append(el('span', 'name', b.uid), el('span', 'uid', until));
      if (b.by) meta.append(el('span', 'uid', 'by ' + b.by));
      const box = el('div', 'actions');
      box.append(button('unban', 'ok', 'unban', () =>
        act('unbanned ' + b.uid, () => api('DELETE', '/bans/' + encodeURIComponent(b.uid)).then(refreshBans))));
      li.append(meta, el('div', 'text reason', b.reason || ''), box);
      return li;
    });
    $('bans').replaceChildren(...items);
  }

  async function refreshAudit() {
    let data;
    try { data = await api('GET', '/audit?limit=100'); } catch (_) { return; }
    const items = (data.entries || []).map((e) => {
      const li = el('li');
      li.dataset.action = e.action;
      const what = e.action + (e.uid ? ' ' + e.uid : '') + (e.seq ? ' #' + e.seq : '');
      li.append(el('span', 'when', new Date(e.at).toLocaleString() + ' · ' + (e.by_name || e.by)), el('span', 'text', what));
      if (e.details) li.append(el('span', 'uid', e.details));
      return li;
    });
    $('audit').replaceChildren(...items);
  }

  // ---- stream analytics ---------------------------------------------------

  function hhmm(ms) {
    const d = new Date(ms);
    return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
  }

  // refreshSessions fills the session picker and shows start or end.
  async function refreshSessions() {
    let data;
    try { data = await api('GET', '/sessions?limit=50'); } catch (_) { return; }
    const pick = $('an-session');
    const keep = pick.value;
    const opts = [el('option', '', 'none')];
    opts[0].value = '';
    for (const s of data.sessions || []) {
      const o = el('option', '', (s.title || s.id) + ' · ' + new Date(s.start).toLocaleString() + (s.end ? '' : ' (live)'));
      o.value = s.id;
      opts.push(o);
    }
    pick.replaceChildren(...opts);
    pick.value = (data.sessions || []).some((s) => s.id === keep) ? keep : '';
    const live = (data.sessions || []).find((s) => !s.end);
    state.liveSession = live ? live.id : '';
    $('session-start').hidden = !!live;
    $('session-end').hidden = !live;
  }

  async function refreshAnalytics() {
    const sess = $('an-session').value;
    let q;
    if (sess) {
      q = 'session=' + encodeURIComponent(sess);
    } else {
      const to = Date.now();
      q = 'from=' + (to - Number($('an-range').value) * 60000) + '&to=' + to;
    }
    let a;
    try { a = await api('GET', '/analytics?phrases=10&' + q); } catch (e) {
      $('an-summary').textContent = 'analytics unavailable: ' + e.message;
      return;
    }
    // Minutes without messages are zeros between the range's first and
    // last minute.
    const first = Math.floor(a.from / 60000) * 60000;
    const n = Math.min(Math.max(1, Math.ceil((a.to - first) / 60000)), 1440);
    const msgs = new Array(n).fill(0);
    const chat = new Array(n).fill(0);
    const labels = [];
    for (let i = 0; i < n; i++) labels.push(hhmm(first + i * 60000));
    for (const m of a.minutes) {
      const i = Math.floor((m.t - first) / 60000);
      if (i >= 0 && i < n) { msgs[i] = m.messages; chat[i] = m.chatters; }
    }
    const markers = a.highlights.map((h) => ({ i: Math.floor((h.t - first) / 60000), href: h.replay,
      title: hhmm(h.t) + ': ' + h.messages + ' messages (median ' + h.median + ')' })).filter((m) => m.i >= 0 && m.i < n);
    DanmakuCharts.lineChart($('an-minutes'), { width: 400, height: 150, labels, legend: true, markers, series: [
      { name: 'messages', cls: 'messages', values: msgs }, { name: 'chatters', cls: 'chatters', values: chat }] });
    DanmakuCharts.barChart($('an-phrases'), { width: 400, labelWidth: 120, empty: 'no phrases',
      items: a.phrases.map((p) => ({ label: p.phrase, value: p.count, title: p.phrase + ': in ' + p.count + ' messages' })) });
    DanmakuCharts.barChart($('an-verdicts'), { width: 400, labelWidth: 190, cls: 'verdicts', empty: 'no verdicts',
      items: a.verdicts.map((v) => ({ label: v.action + ' · ' + v.rule, value: v.count })) });
    const sum = $('an-summary');
    sum.replaceChildren(el('strong', '', a.messages), document.createTextNode(' messages, up to '),
      el('strong', '', a.chatters_peak), document.createTextNode(' chatters a minute, ' + hhmm(a.from) + '–' + hhmm(a.to)));
    sum.dataset.messages = String(a.messages);
    const hl = a.highlights.map((h) => {
      const li = el('li');
      const link = el('a', '', hhmm(h.t) + ' — ' + h.messages + ' messages (median ' + h.median + ')');
      link.href = h.replay;
      link.target = '_blank';
      link.rel = 'noopener';
      li.append(link);
      return li;
    });
    if (!hl.length) hl.push(el('li', 'dim', 'no highlights'));
    $('an-highlights').replaceChildren(...hl);
  }

  function num(id) {
    const v = $(id).value.trim();
    return v === '' ? 0 : Number(v);
  }

  // ---- bans ---------------------------------------------------------------

  const BAN_LABELS = { 60: '1 minute', 600: '10 minutes', 3600: '1 hour', 86400: '24 hours', 604800: '7 days' };
  let banTarget = null;

  function banConfirmLabel() {
    const d = Number($('ban-duration').value);
    return d === 0 ? 'Ban permanently' : 'Time out for ' + BAN_LABELS[d];
  }

  // openBan asks for confirmation, a duration and a reason before banning.
  function openBan(user) {
    banTarget = user;
    $('ban-who').textContent = user.name || user.uid;
    $('ban-uid').textContent = 'uid ' + user.uid;
    $('ban-duration').value = '600';
    $('ban-reason').value = '';
    $('ban-confirm').textContent = banConfirmLabel();
    $('ban-dialog').showModal();
    $('ban-reason').focus();
  }

  function submitBan() {
    const user = banTarget;
    if (!user) return;
    const reason = $('ban-reason').value.trim();
    if (!reason) {
      $('ban-reason').reportValidity();
      return;
    }
    const duration = Number($('ban-duration').value);
    $('ban-dialog').close();
    banTarget = null;
    const who = user.name || user.uid;
    const label = duration === 0 ? 'banned ' + who + ' permanently' : 'timed out ' + who + ' for ' + BAN_LABELS[duration];
    act(label, async () => {
      await api('POST', '/bans', { uid: user.uid, duration_s: duration, reason });
      await refreshBans();
      if (state.card === user.uid) openUser(user.uid);
      refreshUsers();
    });
  }

  // ---- users -----------------------------------------------------------------

  function banText(b) {
    const what = b.until ? 'timed out until ' + new Date(b.until).toLocaleString() : 'banned permanently';
    return what + (b.reason ? ': ' + b.reason : '');
  }

  async function refreshUsers() {
    const q = $('user-q').value.trim();
    let data;
    try { data = await api('GET', '/users?limit=30' + (q ? '&q=' + encodeURIComponent(q) : '')); } catch (e) {
      $('users-hint').textContent = 'cannot list users: ' + e.message;
      return;
    }
    const items = (data.users || []).map((u) => {
      const li = el('li');
      li.dataset.uid = u.uid;
      li.dataset.testid = 'user';
      if (state.card === u.uid) li.classList.add('selected');
      const meta = el('div', 'meta');
      meta.append(el('span', 'name', u.name || u.uid), el('span', 'uid', u.uid));
      if (u.role) meta.append(roleBadge(u.role));
      meta.append(el('span', 'uid', u.messages + (u.messages === 1 ? ' message' : ' messages')));
      if (u.ban) meta.append(el('span', 'badge', u.ban.until ? 'timed out' : 'banned'));
      li.append(meta);
      li.addEventListener('click', () => openUser(u.uid));
      return li;
    });
    if (q && !(data.users || []).some((u) => u.uid === q)) {
      // Ban or inspect by uid even without recent messages.
      const li = el('li', 'by-uid');
      li.dataset.testid = 'open-uid';
      li.append(el('span', 'uid', 'open uid '), el('span', 'name', q));
      li.addEventListener('click', () => openUser(q));
      items.push(li);
    }
    $('users-hint').textContent = q
      ? (data.users || []).length + ' recent chatter(s) matching “' + q + '”'
      : 'recent chatters, newest first (last ' + data.window + ' messages)';
    $('users').replaceChildren(...items);
  }

  // openUser shows one user's card: their recent messages in the room,
  // their ban and the actions.
  async function openUser(uid) {
    state.card = uid;
    let u;
    try { u = await api('GET', '/users/' + encodeURIComponent(uid)); } catch (e) {
      toast('cannot open ' + uid + ': ' + e.message, true);
      return;
    }
    if (state.card !== uid) return;
    for (const li of $('users').children) li.classList.toggle('selected', li.dataset.uid === uid);
    $('uc-name').textContent = u.name || u.uid;
    $('uc-uid').textContent = u.uid;
    $('uc-role').hidden = !u.role;
    $('uc-role').textContent = u.role === 'service' ? 'bot' : (u.role || '');
    $('uc-ban').hidden = !u.ban;
    $('uc-ban').textContent = u.ban ? banText(u.ban) : '';
    $('uc-count').textContent = u.messages
      ? u.messages + ' of the room\'s last ' + u.window + ' messages'
      : 'no messages among the room\'s last ' + u.window;
    const box = $('uc-actions');
    box.replaceChildren();
    if (u.ban) {
      box.append(button('unban', 'ok', 'unban', () =>
        act('unbanned ' + u.uid, () => api('DELETE', '/bans/' + encodeURIComponent(u.uid)).then(() => { refreshBans(); openUser(u.uid); }))));
    } else {
      box.append(...userActions(u.uid, 0, u.name, u.role).children);
    }
    const msgs = (u.recent || []).slice().reverse().map((m) => {
      const li = el('li');
      li.dataset.seq = m.seq;
      if (m.deleted) li.classList.add('deleted');
      const meta = el('div', 'meta');
      meta.append(el('span', 'uid', '#' + m.seq + ' · ' + new Date(m.ts).toLocaleTimeString()));
      if (m.deleted) meta.append(el('span', 'badge', 'deleted'));
      li.append(meta, el('div', 'text', m.text));
      return li;
    });
    $('uc-msgs').replaceChildren(...msgs);
    $('user-card').hidden = false;
    $('user-card').scrollIntoView({ block: 'nearest' });
  }

  // claimsOf reads a JWT's payload for display (the server verifies it).
  function claimsOf(tok) {
    try {
      const p = tok.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const json = decodeURIComponent([...atob(p)].map((c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
      return JSON.parse(json);
    } catch (_) {
      return null;
    }
  }

  function showWhoami(token) {
    const w = $('whoami');
    const c = claimsOf(token);
    if (!c) { w.hidden = true; return; }
    w.replaceChildren(document.createTextNode('signed in as '), el('strong', '', c.name || c.sub), document.createTextNode(' (' + c.sub + ', ' + c.role + ')'));
    if (c.exp) w.append(document.createTextNode(' · token expires ' + new Date(c.exp * 1000).toLocaleTimeString()));
    w.hidden = false;
  }

  // ---- session -------------------------------------------------------------

  function stop() {
    state.wsGen++;
    if (state.ws) state.ws.close(1000);
    state.ws = null;
    state.timers.forEach(clearInterval);
    state.timers = [];
    state.rows.clear();
    state.heldRows.clear();
    state.card = '';
    $('feed').replaceChildren();
    $('users').replaceChildren();
    $('user-card').hidden = true;
  }

  async function open(room, token) {
    stop();
    state.room = room;
    state.token = token;
    setStatus('checking token…');
    try {
      await Promise.all([loadSettings(), loadKeywords()]);
    } catch (e) {
      setStatus('cannot open ' + room + ': ' + e.message, true);
      $('main').hidden = true;
      return;
    }
    sessionStorage.setItem('danmaku.mod.token', token);
    sessionStorage.setItem('danmaku.mod.room', room);
    $('room-name').textContent = room;
    $('main').hidden = false;
    showWhoami(token);
    connectWS();
    refreshHeld();
    refreshBans();
    refreshAudit();
    refreshUsers();
    refreshSessions().then(refreshAnalytics);
    state.timers.push(setInterval(refreshAnalytics, ANALYTICS_POLL_MS), setInterval(refreshSessions, ANALYTICS_POLL_MS));
    state.timers.push(setInterval(tick, 1000), setInterval(refreshHeld, HELD_POLL_MS),
      setInterval(refreshAudit, AUDIT_POLL_MS), setInterval(refreshBans, AUDIT_POLL_MS),
      setInterval(() => { if (!$('user-q').value.trim()) refreshUsers(); }, AUDIT_POLL_MS));
  }

  function init() {
    $('login').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const room = $('room').value.trim();
      const token = $('token').value.trim();
      if (room && token) open(room, token);
    });
    $('logout').addEventListener('click', () => {
      stop();
      sessionStorage.removeItem('danmaku.mod.token');
      $('token').value = '';
      $('main').hidden = true;
      $('whoami').hidden = true;
      setStatus('token forgotten');
    });
    $('user-search').addEventListener('submit', (ev) => {
      ev.preventDefault();
      refreshUsers();
    });
    let searchTimer = 0;
    $('user-q').addEventListener('input', () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(refreshUsers, 250);
    });
    $('ban-duration').addEventListener('change', () => { $('ban-confirm').textContent = banConfirmLabel(); });
    $('ban-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      submitBan();
    });
    $('ban-cancel').addEventListener('click', () => { banTarget = null; $('ban-dialog').close(); });
    $('ban-dialog').addEventListener('close', () => { banTarget = null; });
    $('keywords-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const keywords = $('keywords').value.split('\n').map((s) => s.trim()).filter(Boolean);
      act('keywords saved', () => api('PUT', '/keywords', { keywords, action: $('kw-action').value }));
    });
    $('settings-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const allow = $('s-allow').value.split(',').map((s) => s.trim()).filter(Boolean);
      const body = Object.assign({}, state.settings, {
        slow_mode_sec: num('s-slow'), max_length: num('s-maxlen'), rate_per_sec: num('s-rate'), burst: num('s-burst'),
        link_policy: $('s-links').value, hold_threshold: num('s-hold'), display_budget: num('s-budget'),
        mode_policy: $('s-modes').value, size_policy: $('s-sizes').value,
      });
      body.link_allow = allow;
      act('settings saved', () => api('PUT', '/settings', body).then(loadSettings));
    });
    $('audit-refresh').addEventListener('click', refreshAudit);
    $('analytics-refresh').addEventListener('click', () => refreshSessions().then(refreshAnalytics));
    $('an-range').addEventListener('change', () => { $('an-session').value = ''; refreshAnalytics(); });
    $('an-session').addEventListener('change', refreshAnalytics);
    $('session-start').addEventListener('click', () =>
      act('session started', () => api('POST', '/sessions', {}).then(refreshSessions)));
    $('session-end').addEventListener('click', () => {
      if (state.liveSession) act('session ended', () => api('POST', '/sessions/' + encodeURIComponent(state.liveSession) + '/end').then(refreshSessions));
    });
    const params = new URLSearchParams(location.search);
    const room = params.get('room') || sessionStorage.getItem('danmaku.mod.room') || '';
    const token = sessionStorage.getItem('danmaku.mod.token') || '';
    $('room').value = room;
    $('token').value = token;
    drawChart();
    if (room && token) open(room, token);
  }

  document.addEventListener('DOMContentLoaded', init);
})();
