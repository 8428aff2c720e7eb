// PedagogiskDialog in the browser: resumable uploads (tus) and click-to-play.
// Gradio renders the page after this script loads, so everything listens on
// the document and finds its elements when events arrive.
(function () {
  "use strict";

  var RETRY_DELAYS = [0, 1000, 2000, 5000, 10000, 20000, 30000];
  for (var i = 0; i < 120; i++) RETRY_DELAYS.push(60000);
  // Statuses a retry cannot fix: the server's message is shown instead.
  var FINAL_STATUSES = [400, 401, 403, 404, 410, 413, 507];
  // A page may set window.pdUploadChunkBytes before this script runs; the
  // browser tests do, so a short recording spans many PATCH requests.
  var CHUNK_BYTES = window.pdUploadChunkBytes || 32 * 1048576;
  var current = null;

  function byId(id) { return document.getElementById(id); }

  function cookie(name) {
    var found = document.cookie.split("; ").find(function (c) {
      return c.indexOf(name + "=") === 0;
    });
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }

  // Shared with pd-record.js, which the page loads after this file.
  window.pdPage = { byId: byId, cookie: cookie };

  function say(text) {
    var box = byId("pd-upload-status");
    if (box) box.textContent = text;
  }

  function showProgress(sent, total) {
    var fill = byId("pd-bar-fill");
    var share = total ? sent / total : 0;
    if (fill) fill.style.width = (share * 100).toFixed(1) + "%";
    say("Laddar upp: " + (share * 100).toFixed(1) + " % (" + megabytes(sent) +
        " av " + megabytes(total) + ")");
  }

  function megabytes(n) { return (n / 1048576).toFixed(0) + " MB"; }

  function buttons(running) {
    var pause = byId("pd-pause"), resume = byId("pd-resume");
    if (pause) pause.disabled = !running;
    if (resume) resume.disabled = running || !current;
  }

  function serverMessage(err) {
    var response = err && err.originalResponse;
    var body = response ? response.getBody() : "";
    if (body && body.length < 500) return body;
    return "Anslutningen till servern bröts.";
  }

  function start(file) {
    if (current) current.abort();
    var openai = byId("pd-engine-openai");
    var engine = openai && openai.checked ? "openai" : "local";
    if (engine === "openai" && !window.confirm(
        "Ljudet skickas till OpenAI för transkribering. Vill du fortsätta?")) {
      say("Uppladdningen avbröts innan den började.");
      return;
    }
    var upload = new tus.Upload(file, {
      endpoint: "/api/uploads/",
      chunkSize: CHUNK_BYTES,
      retryDelays: RETRY_DELAYS,
      removeFingerprintOnSuccess: true,
      metadata: { filename: file.name, filetype: file.type || "", engine: engine },
      headers: { "X-CSRF-Token": cookie("pd_csrf") },
      onShouldRetry: function (err) {
        var response = err && err.originalResponse;
        var status = response ? response.getStatus() : 0;
        if (FINAL_STATUSES.indexOf(status) >= 0) return false;
        say("Anslutningen bröts – försöker igen automatiskt …");
        return true;
      },
      onProgress: showProgress,
      onError: function (err) {
        say("Uppladdningen stoppades: " + serverMessage(err));
        buttons(false);
      },
      onSuccess: function () {
        var fill = byId("pd-bar-fill");
        if (fill) fill.style.width = "100%";
        say("Uppladdningen är klar. Transkriberingen startar strax – du kan " +
            "stänga sidan, den fortsätter på servern.");
        current = null;
        buttons(false);
      },
    });
    current = upload;
    upload.findPreviousUploads().then(function (previous) {
      if (previous.length) {
        upload.resumeFromPreviousUpload(previous[0]);
        say("Fortsätter en tidigare uppladdning av " + file.name + " …");
      } else {
        say("Startar uppladdningen av " + file.name + " …");
      }
      upload.start();
      buttons(true);
    });
  }

  function unfinishedNotice() {
    var storage = tus.defaultOptions && tus.defaultOptions.urlStorage;
    if (!storage || !storage.findAllUploads) return;
    storage.findAllUploads().then(function (uploads) {
      if (!uploads.length || current) return;
      var names = uploads.map(function (u) {
        return (u.metadata && u.metadata.filename) || "en fil";
      });
      say("En uppladdning avbröts: " + names.join(", ") +
          ". Välj samma fil igen så fortsätter den där den slutade.");
    });
  }

  document.addEventListener("change", function (event) {
    if (event.target && event.target.id === "pd-file" && event.target.files.length) {
      start(event.target.files[0]);
    }
  });

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) return;
    if (target.id === "pd-pause" && current) {
      current.abort();
      say("Pausad. Tryck Fortsätt för att ladda upp resten.");
      buttons(false);
      return;
    }
    if (target.id === "pd-resume" && current) {
      current.start();
      buttons(true);
      return;
    }
    var line = target.closest(".pd-line");
    var audio = byId("pd-audio");
    if (line && audio) {
      audio.currentTime = parseFloat(line.getAttribute("data-start")) || 0;
      audio.play().catch(function () {});
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    form.querySelectorAll(".pd-csrf").forEach(function (input) {
      input.value = cookie("pd_csrf");
    });
  });

  // A lost network pauses the retries' clock; come back at once when it returns.
  window.addEventListener("online", function () {
    if (current) current.start();
  });

  var tries = 0;
  var waitForPage = setInterval(function () {
    tries += 1;
    if (byId("pd-upload-status") || tries > 100) {
      clearInterval(waitForPage);
      unfinishedNotice();
    }
  }, 200);
})();
