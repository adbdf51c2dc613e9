/* badgepulse share buttons: no dependencies, no cookies.
 * Mark a share button with data attributes copied from the badge page's
 * signed pixel URL:
 *   <a href="https://www.linkedin.com/..." data-badgepulse-share="linkedin"
 *      data-o="ORG" data-i="ISSUER" data-b="BADGE_CLASS" data-a="ASSERTION"
 *      data-kid="KEY_ID" data-sig="SIG">Share</a>
 *   <script src="https://INGEST/v1/share.js" async></script>
 * A click sends {"type":"share",...} with navigator.sendBeacon to
 * /v1/beacon, or loads /s.gif where sendBeacon is missing. */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = script ? script.src.replace(/\/v1\/share\.js.*$/, "") : "";
  function send(el) {
    var d = el.dataset;
    var body = { type: "share", o: d.o, i: d.i, b: d.b, a: d.a, kid: d.kid, sig: d.sig,
                 channel: d.badgepulseShare || "other" };
    var json = JSON.stringify(body);
    if (navigator.sendBeacon && navigator.sendBeacon(base + "/v1/beacon", json)) return;
    var q = ["o", "i", "b", "a", "kid", "sig"].map(function (k) {
      return k + "=" + encodeURIComponent(body[k] || "");
    }).join("&") + "&c=" + encodeURIComponent(body.channel);
    new Image(1, 1).src = base + "/s.gif?" + q;
  }
  document.addEventListener("click", function (ev) {
    var el = ev.target && ev.target.closest && ev.target.closest("[data-badgepulse-share]");
    if (el) send(el);
  }, true);
})();
