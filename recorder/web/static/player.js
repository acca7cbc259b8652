// The recording page's player: one wavesurfer lane per track on the recording's clock,
// gaps and pauses as labelled regions, the transcript highlighted as it plays and clickable
// to seek. Loaded only after the reason gate (the page does not include it before).
const player = document.getElementById("player");
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
    if (local >= 0 && local <= lane.duration()) lane.setTime(local);
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
  const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!answer.ok) throw new Error(`${url}: ${answer.status}`);
  return answer.json();
}

function peaksOf(json) {
  // audiowaveform JSON v2 (recorder.officer.media): interleaved min,max in -128..127.
  return [json.data.map((v) => v / 128)];
}

function addRegions(regions, timeline, lane) {
  for (const gap of timeline.gaps.filter((g) => g.track === lane.track)) {
    regions.addRegion({
      start: gap.start_s - lane.offset, end: gap.end_s - lane.offset,
      content: `gap: ${gap.label} (${gap.cause})`, color: "rgba(200, 30, 30, 0.25)",
      drag: false, resize: false, id: `gap-${lane.track}-${gap.start_s}`,
    });
  }
  for (const pause of timeline.pauses) {
    regions.addRegion({
      start: Math.max(0, pause.start_s - lane.offset), end: pause.end_s - lane.offset,
      content: pause.label, color: "rgba(90, 90, 200, 0.25)", drag: false, resize: false,
    });
  }
}

async function waveLane(WaveSurfer, Regions, timeline, track, element) {
  const peaks = await getJson(track.peaks_url);
  const regions = Regions.create();
  const ws = WaveSurfer.create({
    container: element.querySelector(".waveform"),
    url: track.audio_url,
    peaks: peaksOf(peaks),
    duration: peaks.duration_s,
    height: 64,
    normalize: true,
    plugins: [regions],
  });
  const lane = {
    track: track.track, offset: track.offset_s, element,
    play: () => ws.play(), pause: () => ws.pause(), playing: () => ws.isPlaying(),
    duration: () => ws.getDuration(), setTime: (t) => ws.setTime(t),
    onTime: (fn) => ws.on("timeupdate", fn),
  };
  let drawn = false;
  const draw = () => { if (!drawn) { drawn = true; addRegions(regions, timeline, lane); } };
  ws.on("decode", draw);
  ws.on("ready", draw);
  ws.on("interaction", (t) => seek(t + lane.offset));
  element.dataset.ready = "true";
  return lane;
}

function audioLane(track, element) {
  // Without the waveform library: a plain audio element on the same clock.
  const audio = document.createElement("audio");
  audio.src = track.audio_url;
  audio.preload = "metadata";
  audio.controls = true;
  element.querySelector(".waveform").append(audio);
  element.dataset.ready = "true";
  return {
    track: track.track, offset: track.offset_s, element,
    play: () => audio.play(), pause: () => audio.pause(), playing: () => !audio.paused,
    duration: () => audio.duration || 0, setTime: (t) => { audio.currentTime = t; },
    onTime: (fn) => audio.addEventListener("timeupdate", () => fn(audio.currentTime)),
  };
}

async function makeLanes(timeline) {
  let WaveSurfer = null;
  let Regions = null;
  if (timeline.waveforms_available) {
    WaveSurfer = (await import("/vendor/wavesurfer.js/dist/wavesurfer.esm.js")).default;
    Regions = (await import("/vendor/wavesurfer.js/dist/plugins/regions.esm.js")).default;
  }
  for (const track of timeline.tracks) {
    const element = player.querySelector(`.lane[data-track="${CSS.escape(track.track)}"]`);
    if (!element) continue;
    const lane = WaveSurfer
      ? await waveLane(WaveSurfer, Regions, timeline, track, element)
      : audioLane(track, element);
    lanes.push(lane);
  }
  // The clock follows the lane that starts first; a lane that starts later joins in when the
  // clock reaches it while playing.
  const first = [...lanes].sort((a, b) => a.offset - b.offset)[0];
  if (first) {
    first.onTime((t) => {
      showTime(t + first.offset);
      if (!first.playing()) return;
      for (const lane of lanes) {
        const local = now - lane.offset;
        if (lane !== first && !lane.playing() && local >= 0 && local < lane.duration()) {
          lane.setTime(local);
          lane.play();
        }
      }
    });
  }
  playButton.disabled = lanes.length === 0;
  playButton.addEventListener("click", () => {
    const playing = lanes.some((l) => l.playing());
    for (const lane of lanes) {
      if (playing) lane.pause();
      else if (now - lane.offset >= 0 && now - lane.offset < (lane.duration() || Infinity)) {
        lane.play();
      }
    }
    playButton.textContent = playing ? "Play" : "Pause";
  });
}

function renderLines(id, lines) {
  const list = document.getElementById(id);
  list.replaceChildren();
  for (const line of lines) {
    const li = document.createElement("li");
    li.className = line.kind;
    if (line.at_s !== null) {
      li.dataset.atS = String(line.at_s);
      const at = document.createElement("button");
      at.type = "button";
      at.className = "at";
      at.textContent = `${line.at_s.toFixed(1)} s`;
      at.addEventListener("click", () => seek(line.at_s));
      li.append(at, " ");
    }
    li.append(document.createTextNode(line.text));
    list.append(li);
  }
  if (lines.length === 0) list.append(Object.assign(document.createElement("li"), { textContent: "none" }));
}

async function main() {
  const timeline = await getJson(player.dataset.timelineUrl);
  cues = timeline.transcript;
  renderTranscript();
  renderLines("record-events", timeline.events);
  renderLines("chat", timeline.chat);
  if (timeline.records_problem) {
    const p = document.createElement("p");
    p.className = "error";
    p.id = "records-problem";
    p.textContent = timeline.records_problem;
    player.append(p);
  }
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
