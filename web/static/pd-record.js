// PedagogiskDialog: record a conversation in the page, uploading while it runs.
//
// MediaRecorder hands over a piece of WebM/Opus every second; each piece is
// appended to a tus upload of deferred length with a PATCH at the offset the
// server last confirmed, so what the server holds ends at a piece boundary.
// Pieces not yet confirmed stay in memory, and in IndexedDB, and are sent
// again after a lost connection. Stopping sends Upload-Length, which completes
// the upload and starts the transcription. A page that loads while an earlier
// recording of this browser is unfinished (a reload, a closed tab, a crash)
// sends what that page kept but could not send, then ends the upload there,
// so that part is transcribed (see web/recorder.py).
(function () {
  "use strict";

  var ENDPOINT = "/api/uploads/";
  var OFFSET_TYPE = "application/offset+octet-stream";
  var DB_NAME = "pd-recorder";
  var DB_PIECES = "pieces";
  var PIECE_MS = 1000;
  var TICK_MS = 200;
  var STORE_KEY = "pd-recording";
  // Another tab that records writes its heartbeat at least this often.
  var STALE_BEAT_MS = 4000;
  var RETRY_MS = [1000, 2000, 3000, 5000, 10000, 15000, 30000];
  var BITS_PER_SECOND = 32000;
  // About five seconds of audio waiting in the browser: say the network is slow.
  var BACKLOG_BYTES = 5 * BITS_PER_SECOND / 8;
  var MIME_TYPES = [
    "audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4",
  ];
  // The Matroska Cluster element: the header of the stream ends before it.
  var CLUSTER_ID = [0x1f, 0x43, 0xb6, 0x75];

  var rec = null;
  var leftOverBusy = false;
  var opened = null;

  var byId = window.pdPage.byId;
  var cookie = window.pdPage.cookie;

  function say(text) {
    var box = byId("pd-record-status");
    if (box) box.textContent = text;
  }

  function buttons(recording) {
    var start = byId("pd-record-start"), stop = byId("pd-record-stop");
    if (start) start.disabled = recording;
    if (stop) stop.disabled = !recording;
  }

  function tusHeaders(extra) {
    var headers = { "Tus-Resumable": "1.0.0", "X-CSRF-Token": cookie("pd_csrf") };
    Object.keys(extra || {}).forEach(function (k) { headers[k] = extra[k]; });
    return headers;
  }

  function base64(text) {
    var bytes = new TextEncoder().encode(text), binary = "";
    bytes.forEach(function (b) { binary += String.fromCharCode(b); });
    return btoa(binary);
  }

  function clock(ms) {
    var s = Math.floor(ms / 1000);
    var h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    var rest = (s % 60 < 10 ? "0" : "") + (s % 60);
    return h ? h + ":" + (m < 10 ? "0" : "") + m + ":" + rest : m + ":" + rest;
  }

  function kilobytes(n) { return Math.round(n / 1024) + " kB"; }

  function remember(fields) {
    var saved = {};
    try { saved = JSON.parse(localStorage.getItem(STORE_KEY) || "{}"); } catch (e) {}
    Object.keys(fields).forEach(function (k) { saved[k] = fields[k]; });
    localStorage.setItem(STORE_KEY, JSON.stringify(saved));
  }

  function forget(url) {
    var saved = recalled();
    if (saved && saved.url === url) localStorage.removeItem(STORE_KEY);
  }

  function recalled() {
    try { return JSON.parse(localStorage.getItem(STORE_KEY) || "null"); } catch (e) {
      return null;
    }
  }

  // Pieces kept in the browser -------------------------------------------------
  // Each piece stays in IndexedDB until the server has confirmed it, keyed by
  // its upload and its offset there. Failures only lose this safety net.

  function database() {
    if (!window.indexedDB) return Promise.reject(new Error("no IndexedDB"));
    if (!opened) {
      opened = new Promise(function (resolve, reject) {
        var request = indexedDB.open(DB_NAME, 1);
        request.onupgradeneeded = function () {
          request.result.createObjectStore(DB_PIECES, { keyPath: ["url", "start"] });
        };
        request.onsuccess = function () { resolve(request.result); };
        request.onerror = function () { reject(request.error); };
      });
    }
    return opened;
  }

  function withPieces(mode, work) {
    return database().then(function (db) {
      return new Promise(function (resolve, reject) {
        var tx = db.transaction(DB_PIECES, mode);
        work(tx.objectStore(DB_PIECES));
        tx.oncomplete = function () { resolve(); };
        tx.onerror = function () { reject(tx.error); };
      });
    });
  }

  function eachPiece(store, url, visit) {
    var range = IDBKeyRange.bound([url, 0], [url, Infinity]);
    store.openCursor(range).onsuccess = function (event) {
      var cursor = event.target.result;
      if (!cursor) return;
      visit(cursor);
      cursor.continue();
    };
  }

  function keepPiece(url, start, blob) {
    withPieces("readwrite", function (store) {
      store.put({ url: url, start: start, blob: blob });
    }).catch(function () {});
  }

  // Drop the pieces of ``url`` that end at or before ``below`` (all without it).
  function dropPieces(url, below) {
    withPieces("readwrite", function (store) {
      eachPiece(store, url, function (cursor) {
        var piece = cursor.value;
        if (below === undefined || piece.start + piece.blob.size <= below) {
          cursor.delete();
        }
      });
    }).catch(function () {});
  }

  function keptPieces(url) {
    var found = [];
    return withPieces("readonly", function (store) {
      eachPiece(store, url, function (cursor) { found.push(cursor.value); });
    }).then(function () { return found; }, function () { return []; });
  }

  function dropAllPieces() {
    withPieces("readwrite", function (store) { store.clear(); }).catch(function () {});
  }

  // The server's side -----------------------------------------------------------

  function createUpload(name, mime, engine) {
    var metadata = [
      "filename " + base64(name), "filetype " + base64(mime),
      "engine " + base64(engine), "live " + base64("1"),
    ].join(",");
    return fetch(ENDPOINT, {
      method: "POST",
      headers: tusHeaders({ "Upload-Defer-Length": "1", "Upload-Metadata": metadata }),
    }).then(function (res) {
      if (res.status !== 201) {
        return res.text().then(function (text) { throw new Error(text); });
      }
      return res.headers.get("Location");
    });
  }

  function head(url) {
    return fetch(url, { method: "HEAD", headers: tusHeaders(), cache: "no-store" });
  }

  function endAt(url, offset) {
    return fetch(url, {
      method: "PATCH",
      headers: tusHeaders({
        "Upload-Offset": String(offset), "Upload-Length": String(offset),
        "Content-Type": OFFSET_TYPE,
      }),
    });
  }

  // The recording in progress --------------------------------------------------

  function otherTabRecords() {
    var saved = recalled();
    return !!(saved && saved.url && Date.now() - (saved.beat || 0) < STALE_BEAT_MS);
  }

  function start() {
    if (rec) return;
    if (leftOverBusy) {
      say("Den förra inspelningen avslutas fortfarande. Försök igen om en stund.");
      return;
    }
    if (otherTabRecords()) {
      say("En inspelning pågår redan i en annan flik. Stoppa den först.");
      return;
    }
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      say("Den här webbläsaren kan inte spela in ljud. " +
          "Använd Chrome, Edge eller Firefox.");
      return;
    }
    var openai = byId("pd-engine-openai");
    var engine = openai && openai.checked ? "openai" : "local";
    if (engine === "openai" && !window.confirm(
        "Ljudet skickas till OpenAI för transkribering. Vill du fortsätta?")) {
      say("Inspelningen startades inte.");
      return;
    }
    buttons(true);
    say("Ber om tillgång till mikrofonen …");
    navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false },
    }).then(function (stream) {
      return begin(stream, engine);
    }).catch(function (err) {
      rec = null;
      buttons(false);
      say(err && err.name === "NotAllowedError"
        ? "Mikrofonen är blockerad. Tillåt den för sidan och försök igen."
        : "Inspelningen kunde inte starta: " + (err && err.message || err));
    });
  }

  function begin(stream, engine) {
    var mime = MIME_TYPES.find(function (type) {
      return MediaRecorder.isTypeSupported(type);
    });
    var ext = !mime || mime.indexOf("webm") >= 0 ? ".webm" : mime.indexOf("ogg") >= 0
      ? ".ogg" : ".m4a";
    var now = new Date();
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    var name = "Inspelning " + now.getFullYear() + "-" + pad(now.getMonth() + 1) + "-" +
      pad(now.getDate()) + " " + pad(now.getHours()) + "." + pad(now.getMinutes()) +
      "." + pad(now.getSeconds());
    rec = {
      stream: stream, name: name, ext: ext, engine: engine, mime: mime || "",
      url: "", acked: 0, pending: [], sending: false, stopped: false, ending: false,
      header: null, tries: 0, startedAt: 0, parts: 1, received: 0,
    };
    // No other tab records and no earlier recording is being ended: what is
    // left in IndexedDB belongs to no one.
    dropAllPieces();
    return createUpload(name + ext, rec.mime, engine).then(function (url) {
      rec.url = url;
      remember({ url: url, name: name, beat: Date.now() });
      record(stream, mime);
    }).catch(function (err) {
      stream.getTracks().forEach(function (t) { t.stop(); });
      throw err;
    });
  }

  function record(stream, mime) {
    var options = { audioBitsPerSecond: BITS_PER_SECOND };
    if (mime) options.mimeType = mime;
    var recorder = new MediaRecorder(stream, options);
    rec.recorder = recorder;
    recorder.ondataavailable = function (event) {
      if (!event.data || !event.data.size) return;
      if (!rec.header && !rec.headerSeen) keepHeader(event.data);
      if (rec.url) keepPiece(rec.url, rec.received, event.data);
      rec.received += event.data.size;
      rec.pending.push(event.data);
      pump();
    };
    recorder.onstop = function () {
      rec.stopped = true;
      release();
      pump();
    };
    recorder.onerror = function (event) {
      say("Inspelningen avbröts av webbläsaren: " + (event.error || "okänt fel") +
          ". Det som hann spelas in laddas upp.");
      if (recorder.state !== "inactive") recorder.stop();
    };
    listen(stream);
    rec.startedAt = Date.now();
    recorder.start(PIECE_MS);
    rec.ticker = setInterval(tick, TICK_MS);
    say("Spelar in. Ljudet laddas upp medan du spelar in.");
  }

  function keepHeader(blob) {
    // What comes before the first cluster starts every continued upload, so
    // that a part sent after the server ended the first one is a file too.
    rec.headerSeen = true;
    var current = rec;
    blob.arrayBuffer().then(function (buffer) {
      var bytes = new Uint8Array(buffer);
      for (var i = 0; i + 3 < bytes.length; i++) {
        if (bytes[i] === CLUSTER_ID[0] && bytes[i + 1] === CLUSTER_ID[1] &&
            bytes[i + 2] === CLUSTER_ID[2] && bytes[i + 3] === CLUSTER_ID[3]) {
          current.header = blob.slice(0, i);
          return;
        }
      }
    });
  }

  function listen(stream) {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    rec.audio = new Context();
    // Made after the microphone prompt, outside the click: it may start paused.
    rec.audio.resume().catch(function () {});
    var source = rec.audio.createMediaStreamSource(stream);
    rec.analyser = rec.audio.createAnalyser();
    rec.analyser.fftSize = 1024;
    source.connect(rec.analyser);
    rec.samples = new Float32Array(rec.analyser.fftSize);
  }

  function level() {
    if (!rec.analyser) return 0;
    rec.analyser.getFloatTimeDomainData(rec.samples);
    var sum = 0;
    for (var i = 0; i < rec.samples.length; i++) sum += rec.samples[i] * rec.samples[i];
    var rms = Math.sqrt(sum / rec.samples.length);
    var db = 20 * Math.log10(rms || 1e-8);
    return Math.max(0, Math.min(1, (db + 60) / 60));
  }

  function tick() {
    if (!rec) return;
    var elapsed = Date.now() - rec.startedAt;
    var time = byId("pd-record-time"), fill = byId("pd-record-level");
    if (time && !rec.stopped) time.textContent = clock(elapsed);
    if (fill) {
      var share = rec.stopped ? 0 : level();
      fill.style.width = (share * 100).toFixed(0) + "%";
      fill.setAttribute("data-level", share.toFixed(3));
    }
    remember({ beat: Date.now() });
    var waiting = rec.pending.reduce(function (n, b) { return n + b.size; }, 0);
    var box = byId("pd-record-status");
    if (box) box.setAttribute("data-sent", String(rec.acked));
    if (!rec.stopped && waiting > BACKLOG_BYTES) {
      say("Nätverket hänger inte med: " + kilobytes(waiting) + " väntar i " +
          "webbläsaren och skickas när anslutningen är tillbaka. " +
          "Stäng inte sidan.");
    }
  }

  function release() {
    if (rec.stream) rec.stream.getTracks().forEach(function (t) { t.stop(); });
    if (rec.audio) rec.audio.close().catch(function () {});
    rec.analyser = null;
  }

  function stop() {
    if (!rec || !rec.recorder || rec.recorder.state === "inactive") return;
    var stopButton = byId("pd-record-stop");
    if (stopButton) stopButton.disabled = true;
    say("Avslutar inspelningen och laddar upp det sista …");
    rec.recorder.stop();
  }

  // Sending -----------------------------------------------------------------------

  function pump() {
    if (!rec || rec.sending || !rec.url) return;
    if (!rec.pending.length) {
      if (rec.stopped && !rec.ending) finish();
      return;
    }
    rec.sending = true;
    var body = new Blob(rec.pending, { type: OFFSET_TYPE });
    fetch(rec.url, {
      method: "PATCH",
      headers: tusHeaders({
        "Upload-Offset": String(rec.acked),
        "Content-Type": OFFSET_TYPE,
      }),
      body: body,
    }).then(function (res) {
      rec.sending = false;
      if (res.status === 204) {
        advance(parseInt(res.headers.get("Upload-Offset"), 10));
        rec.tries = 0;
        pump();
      } else {
        refused(res);
      }
    }).catch(function () {
      rec.sending = false;
      later(resync, "Anslutningen bröts – ljudet sparas i webbläsaren och " +
            "skickas när den är tillbaka.");
    });
  }

  function advance(offset) {
    var drop = offset - rec.acked;
    while (drop > 0 && rec.pending.length) {
      var first = rec.pending[0];
      if (first.size <= drop) {
        drop -= first.size;
        rec.pending.shift();
      } else {
        rec.pending[0] = first.slice(drop);
        drop = 0;
      }
    }
    rec.acked = offset;
    dropPieces(rec.url, offset);
  }

  function refused(res) {
    if (res.status === 409) return resync();
    if (res.status === 423) return later(pump);
    if ([404, 410, 413].indexOf(res.status) >= 0) return continueAnew();
    res.text().then(function (text) {
      var why = res.status === 401 || res.status === 403
        ? "Du är inte inloggad längre. Logga in i en annan flik; inspelningen " +
          "fortsätter och skickas sedan."
        : "Servern tog inte emot ljudet (" + (text || res.status) + ").";
      later(resync, why + " Försöker igen …");
    });
  }

  function later(action, message) {
    if (message) say(message);
    var wait = RETRY_MS[Math.min(rec.tries, RETRY_MS.length - 1)];
    rec.tries += 1;
    setTimeout(action, wait);
  }

  function resync() {
    if (!rec) return;
    head(rec.url).then(function (res) {
      if (res.status !== 200) {
        if ([404, 410].indexOf(res.status) >= 0) return continueAnew();
        return later(resync);
      }
      if (res.headers.get("Upload-Length") !== null && !rec.ending) {
        return continueAnew();
      }
      var offset = parseInt(res.headers.get("Upload-Offset"), 10);
      // The server keeps what arrived of a request cut short; send the rest.
      if (offset > rec.acked) advance(offset);
      if (!rec.stopped) say("Spelar in. Anslutningen är tillbaka.");
      pump();
    }).catch(function () { later(resync); });
  }

  function continueAnew() {
    // The server has ended the upload (a long outage, see PD_RECORDING_IDLE_MINUTES):
    // what is still here becomes a new upload, behind the stream's header.
    rec.parts += 1;
    if (rec.header && rec.acked > 0) rec.pending.unshift(rec.header);
    var previous = rec.url;
    rec.acked = 0;
    rec.url = "";
    var name = rec.name + " del " + rec.parts;
    createUpload(name + rec.ext, rec.mime, rec.engine).then(function (url) {
      rec.url = url;
      remember({ url: url, name: name, beat: Date.now() });
      if (previous) dropPieces(previous);
      rec.received = 0;
      rec.pending.forEach(function (blob) {
        keepPiece(url, rec.received, blob);
        rec.received += blob.size;
      });
      say("Servern hade avslutat den första delen; resten laddas upp som " +
          name + ".");
      pump();
    }).catch(function () { later(continueAnew); });
  }

  function finish() {
    rec.ending = true;
    var done = rec.acked;
    var request = done > 0
      ? endAt(rec.url, done)
      : fetch(rec.url, { method: "DELETE", headers: tusHeaders() });
    request.then(function (res) {
      if (res.status === 423) return later(finish);
      if (res.status === 409) { rec.ending = false; return resync(); }
      if (res.status === 404 || res.status === 410) {
        return done ? gone() : closed(0);
      }
      if (res.status >= 300) {
        return later(finish, "Uppladdningen kunde inte avslutas – försöker " +
                     "igen …");
      }
      closed(done);
    }).catch(function () { later(finish); });
  }

  function closed(sent) {
    var length = clock(Date.now() - rec.startedAt);
    reset();
    say(sent > 0
      ? "Inspelningen (" + length + ") är uppladdad. Transkriberingen startar strax " +
        "– du kan stänga sidan, den fortsätter på servern."
      : "Inget ljud spelades in.");
  }

  function gone() {
    reset();
    say("Inspelningen finns inte längre på servern (den kan ha tagits bort). " +
        "Spela in igen.");
  }

  function reset() {
    clearInterval(rec.ticker);
    dropPieces(rec.url);
    forget(rec.url);
    rec = null;
    buttons(false);
    var fill = byId("pd-record-level");
    if (fill) fill.style.width = "0%";
  }

  // A recording that an earlier page left unfinished ---------------------------

  function endLeftOver() {
    var saved = recalled();
    if (!saved || !saved.url || rec) return;
    var age = Date.now() - (saved.beat || 0);
    if (age < STALE_BEAT_MS) {
      say("En inspelning pågår i en annan flik.");
      setTimeout(endLeftOver, STALE_BEAT_MS - age + 100);
      return;
    }
    leftOverBusy = true;
    var url = saved.url;
    Promise.all([head(url), keptPieces(url)]).then(function (found) {
      var res = found[0];
      if (res.status === 404 || res.status === 410) return settled(url);
      if (res.status !== 200) throw new Error(String(res.status));
      if (res.headers.get("Upload-Length") !== null) return settled(url);
      var offset = parseInt(res.headers.get("Upload-Offset"), 10);
      return sendKept(url, offset, found[1]).then(function (reached) {
        var ending = reached > 0
          ? endAt(url, reached)
          : fetch(url, { method: "DELETE", headers: tusHeaders() });
        return ending.then(function (answer) {
          if (answer.status === 423 || answer.status === 409) throw new Error("busy");
          settled(url);
          if (reached > 0 && answer.status < 300) {
            say("Inspelningen ”" + (saved.name || "") + "” avbröts när sidan " +
                "laddades om eller stängdes. Det som hann spelas in (" +
                kilobytes(reached) + ") sparades och transkriberas nu. Tryck " +
                "Spela in för att fortsätta i en ny inspelning.");
          }
        });
      });
    }).catch(function () { setTimeout(endLeftOver, 2000); });
  }

  // Send what the earlier page kept beyond the server's offset; the new offset.
  function sendKept(url, offset, kept) {
    var tail = [], end = offset;
    kept.forEach(function (piece) {
      var stop = piece.start + piece.blob.size;
      if (stop <= end || piece.start > end) return;
      tail.push(piece.blob.slice(end - piece.start));
      end = stop;
    });
    if (!tail.length) return Promise.resolve(offset);
    return fetch(url, {
      method: "PATCH",
      headers: tusHeaders({
        "Upload-Offset": String(offset), "Content-Type": OFFSET_TYPE,
      }),
      body: new Blob(tail),
    }).then(function (res) {
      if (res.status !== 204) throw new Error(String(res.status));
      return parseInt(res.headers.get("Upload-Offset"), 10);
    });
  }

  function settled(url) {
    dropPieces(url);
    forget(url);
    leftOverBusy = false;
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) return;
    if (target.closest("#pd-record-start")) start();
    else if (target.closest("#pd-record-stop")) stop();
  });

  // A page going away stops its heartbeat at once, so the next page need not
  // wait to be sure that no other tab is still recording.
  // Leaving ends the recording (Gradio also reloads the page by itself when
  // its connection comes back), so the browser asks first.
  window.addEventListener("beforeunload", function (event) {
    if (!rec) return;
    event.preventDefault();
    event.returnValue = "";
  });

  window.addEventListener("pagehide", function () {
    if (rec) remember({ beat: 0 });
  });

  window.addEventListener("online", function () {
    if (rec && !rec.sending) resync();
  });

  var tries = 0;
  var waitForPage = setInterval(function () {
    tries += 1;
    if (byId("pd-record-status") || tries > 150) {
      clearInterval(waitForPage);
      endLeftOver();
    }
  }, 200);
})();
