// The recording page's player: one wavesurfer lane per track on the recording's clock,
// gaps and pauses as labelled regions, the transcript highlighted as it plays and clickable
// to seek. Loaded only after the reason gate (the page does not include it before).
const player = document.getElementById("player");
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const clock = document.getElementById("clock");
const playButton = document.getElementById("play");
const transcript = document.getElementById("transcript");
const lanes = [];
let cues = [];
let now = 0;

function showTime(t) {
  now = Math.max(0, t);
  clock.textContent = now.toFixed(1);
  let current = -1;
  cues.forEach((cue, i) => { if (cue.start_s <= now && now < cue.end_s) current = i; });
  transcript.querySelectorAll("li.cue").forEach((li, i) => {
    const active = i === current;
    if (active && !li.classList.contains("active")) li.scrollIntoView({ block: "nearest" });
    li.classList.toggle("active", active);
  });
}

function seek(t) {
  for (const lane of lanes) {
    const local = t - lane.offset;
    if (lane.ws && local >= 0 && local <= lane.ws.getDuration()) lane.ws.setTime(local);
  }
  showTime(t);
}

function renderTranscript() {
  transcript.replaceChildren();
  for (const cue of cues) {
    const li = document.createElement("li");
    li.className = "cue";
    li.dataset.startS = String(cue.start_s);
    li.dataset.endS = String(cue.end_s);
    const who = document.createElement("span");
    who.className = "speaker";
    who.textContent = cue.speaker + ":";
    li.append(who, document.createTextNode(cue.text));
    li.addEventListener("click", () => seek(cue.start_s));
    transcript.append(li);
  }
}

async function getJson(url) {
  const answer = await fetch(url, { credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
  if (!answer.ok) throw new Error(`${url}: ${answer.status}`);
  return answer.json();
}

async function makeLanes(timeline) {
  const WaveSurfer = (await import("/vendor/wavesurfer.js/dist/wavesurfer.esm.js")).default;
  const Regions = (await import("/vendor/wavesurfer.js/dist/plugins/regions.esm.js")).default;
  for (const track of timeline.tracks) {
    const element = player.querySelector(`.lane[data-track="${CSS.escape(track.track)}"]`);
    if (!element) continue;
    const peaks = await getJson(track.peaks_url);
    const regions = Regions.create();
    const ws = WaveSurfer.create({
      container: element.querySelector(".waveform"),
      url: track.audio_url,
      peaks: peaks.peaks ?? peaks.data ?? undefined,
      duration: peaks.duration_s ?? peaks.duration ?? track.duration_s,
      height: 64,
      plugins: [regions],
    });
    const lane = { track: track.track, offset: track.offset_s, ws, element };
    lanes.push(lane);
    ws.on("ready", () => {
      for (const gap of timeline.gaps.filter((g) => g.track === track.track)) {
        regions.addRegion({
          start: gap.start_s - lane.offset, end: gap.end_s - lane.offset,
          content: `gap: ${gap.label}`, color: "rgba(200, 30, 30, 0.25)", drag: false, resize: false,
          id: `gap-${track.track}-${gap.start_s}`,
        });
      }
      for (const pause of timeline.pauses) {
        regions.addRegion({
          start: pause.start_s - lane.offset, end: pause.end_s - lane.offset,
          content: pause.label, color: "rgba(90, 90, 200, 0.25)", drag: false, resize: false,
        });
      }
    });
    ws.on("interaction", (t) => seek(t + lane.offset));
    if (lanes.length === 1) ws.on("timeupdate", (t) => showTime(t + lane.offset));
  }
  playButton.disabled = false;
  playButton.addEventListener("click", () => {
    const playing = lanes.some((l) => l.ws.isPlaying());
    for (const lane of lanes) {
      if (playing) lane.ws.pause();
      else if (now - lane.offset >= 0) lane.ws.play();
    }
    playButton.textContent = playing ? "Play" : "Pause";
  });
}

async function main() {
  const timeline = await getJson(player.dataset.timelineUrl);
  cues = timeline.transcript;
  renderTranscript();
  showTime(0);
  player.dataset.loaded = "true";
  if (timeline.media_available) await makeLanes(timeline);
}

main().catch((error) => {
  const p = document.createElement("p");
  p.className = "error";
  p.id = "player-error";
  p.textContent = `The player could not load: ${error.message}`;
  player.prepend(p);
});
