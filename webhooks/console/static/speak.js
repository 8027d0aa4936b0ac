// Progressive enhancement for the keypad simulator: read aloud what the call says, with the
// browser's own speech synthesis, only when the person ticks the box. Everything works without
// it; the choice is remembered in this browser only.
(function () {
  "use strict";
  if (!("speechSynthesis" in window)) return;
  var control = document.querySelector(".speech-control");
  var box = document.getElementById("speak");
  if (!control || !box) return;
  control.hidden = false;
  var key = "involve-console-speak";
  box.checked = window.localStorage.getItem(key) === "1";

  function said() {
    // What the call said since the caller last pressed or said something.
    var bubbles = Array.prototype.slice.call(document.querySelectorAll(".thread .bubble"));
    var lines = [];
    for (var i = bubbles.length - 1; i >= 0; i--) {
      if (!bubbles[i].classList.contains("from-them")) break;
      lines.unshift(bubbles[i].querySelector(".bubble-text").textContent);
    }
    return lines.join(" ");
  }

  function speak() {
    window.speechSynthesis.cancel();
    var text = said();
    if (text) {
      var utterance = new SpeechSynthesisUtterance(text);
      utterance.lang = "en-GB";
      window.speechSynthesis.speak(utterance);
    }
  }

  box.addEventListener("change", function () {
    window.localStorage.setItem(key, box.checked ? "1" : "0");
    if (box.checked) speak(); else window.speechSynthesis.cancel();
  });
  if (box.checked) speak();
})();
