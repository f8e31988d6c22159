// The web console: sign in with a token, list the caller's VMs (GET /vms), and open a VM's
// serial console in xterm.js over the /console/NAME WebSocket. The token lives in this tab's
// sessionStorage and travels only in headers: Authorization for REST calls, and for the
// WebSocket (whose browser API cannot set headers) as the subprotocol "bearer.TOKEN" next to
// "noid", never in a URL.
(function () {
  "use strict";
  const KEY = "noid-token";
  const $ = (id) => document.getElementById(id);
  let term = null, fit = null, socket = null, refreshTimer = null;

  function token() { return sessionStorage.getItem(KEY); }

  async function api(path) {
    const resp = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const err = new Error(body.message || resp.statusText);
      err.status = resp.status;
      throw err;
    }
    return body;
  }

  async function signIn(event) {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    $("token").value = "";
    await start();
  }

  function signOut() {
    sessionStorage.removeItem(KEY);
    closeConsole();
    clearInterval(refreshTimer);
    $("app").hidden = true;
    $("sign-out").hidden = true;
    $("who").textContent = "";
    $("sign-in").hidden = false;
  }

  async function start() {
    $("sign-in-error").textContent = "";
    try {
      const me = await api("/whoami");
      $("who").textContent = me.user;
    } catch (e) {
      sessionStorage.removeItem(KEY);
      $("sign-in-error").textContent =
        e.status === 401 ? "The server does not know this token." : "Cannot reach the server: " + e.message;
      return;
    }
    $("sign-in").hidden = true;
    $("app").hidden = false;
    $("sign-out").hidden = false;
    await listVms();
    refreshTimer = setInterval(listVms, 5000);
  }

  async function listVms() {
    let vms;
    try {
      vms = (await api("/vms")).vms || [];
      $("vms-error").textContent = "";
    } catch (e) {
      $("vms-error").textContent = "Cannot list VMs: " + e.message;
      return;
    }
    const rows = $("vm-rows");
    rows.replaceChildren();
    for (const vm of vms) {
      const tr = document.createElement("tr");
      tr.dataset.vm = vm.name;
      const state = (vm.state || "").replace("VM_STATE_", "").toLowerCase();
      for (const [text, cls] of [[vm.name, "name"], [state, "state state-" + state],
                                 [vm.address || "-", "address"], [vm.image || "", "image"]]) {
        const td = document.createElement("td");
        td.className = cls;
        td.textContent = text;
        tr.appendChild(td);
      }
      const td = document.createElement("td");
      const button = document.createElement("button");
      button.textContent = "Console";
      button.className = "open-console";
      button.addEventListener("click", () => openConsole(vm.name));
      td.appendChild(button);
      tr.appendChild(td);
      rows.appendChild(tr);
    }
    $("no-vms").hidden = vms.length > 0;
  }

  function sendSize() {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ resize: { rows: term.rows, cols: term.cols } }));
    }
  }

  function openConsole(name) {
    closeConsole();
    $("console").hidden = false;
    $("console-vm").textContent = name;
    $("console-state").textContent = "connecting";
    term = new Terminal({ cursorBlink: true, scrollback: 5000 });
    fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open($("terminal"));
    fit.fit();
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/console/" + encodeURIComponent(name),
                           ["noid", "bearer." + token()]);
    socket.binaryType = "arraybuffer";
    const encoder = new TextEncoder();
    socket.onopen = () => { $("console-state").textContent = "connected"; sendSize(); term.focus(); };
    socket.onmessage = (m) => {
      if (typeof m.data === "string") term.write(m.data);
      else term.write(new Uint8Array(m.data));
    };
    socket.onclose = (e) => {
      $("console-state").textContent = "closed" + (e.reason ? ": " + e.reason : "");
    };
    term.onData((d) => { if (socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(d)); });
    term.onResize(sendSize);
  }

  function closeConsole() {
    if (socket) { socket.onclose = null; socket.close(); socket = null; }
    if (term) { term.dispose(); term = null; fit = null; }
    $("console").hidden = true;
  }

  window.addEventListener("resize", () => { if (fit) fit.fit(); });
  $("sign-in").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("refresh").addEventListener("click", listVms);
  $("close-console").addEventListener("click", closeConsole);
  if (token()) start();
})();
