// Soft tones made with WebAudio (nothing to download): the cues a therapist hears and the
// speaker test in the device settings.

/**
 * Plays `notes` ([frequency Hz, start s]) as sine tones on `context`: each rises to `peak` over
 * `attack` s, fades out by `fade` s and stops at `length` s after its start.
 */
export function playTones(context, notes, { peak, attack, fade, length }) {
  const now = context.currentTime;
  for (const [freq, at] of notes) {
    const osc = context.createOscillator();
    const gain = context.createGain();
    osc.type = 'sine';
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0, now + at);
    gain.gain.linearRampToValueAtTime(peak, now + at + attack);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + at + fade);
    osc.connect(gain).connect(context.destination);
    osc.start(now + at);
    osc.stop(now + at + length);
  }
}
