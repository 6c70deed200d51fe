function b64uToBuf(s) {
  s = s.replace(/-/g, "+").replace(/_/g, "/");
  while (s.length % 4) { s += "="; }
  var b = atob(s), a = new Uint8Array(b.length);
  for (var i = 0; i < b.length; i++) { a[i] = b.charCodeAt(i); }
  return a.buffer;
}
function bufToB64u(buf) {
  var a = new Uint8Array(buf), s = "";
  for (var i = 0; i < a.length; i++) { s += String.fromCharCode(a[i]); }
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function creationOptions(pk) {
  pk.challenge = b64uToBuf(pk.challenge);
  pk.user.id = b64uToBuf(pk.user.id);
  (pk.excludeCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
  return pk;
}
function requestOptions(pk) {
  pk.challenge = b64uToBuf(pk.challenge);
  (pk.allowCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
  return pk;
}
function registrationJSON(c) {
  return { id: c.id, rawId: bufToB64u(c.rawId), type: c.type, extensions: {},
    response: { attestationObject: bufToB64u(c.response.attestationObject),
      clientDataJSON: bufToB64u(c.response.clientDataJSON),
      transports: c.response.getTransports ? c.response.getTransports() : undefined } };
}
function assertionJSON(c) {
  return { id: c.id, rawId: bufToB64u(c.rawId), type: c.type, extensions: {},
    response: { authenticatorData: bufToB64u(c.response.authenticatorData),
      clientDataJSON: bufToB64u(c.response.clientDataJSON),
      signature: bufToB64u(c.response.signature),
      userHandle: c.response.userHandle ? bufToB64u(c.response.userHandle) : null } };
}
function postJSON(url, body) {
  return fetch(url, { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) })
    .then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) { throw j; }
        return j;
      });
    });
}
