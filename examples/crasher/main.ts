// crasher: crashes on demand. BUTTON_A pressed → an uncaught error (app-crash, with its stack);
// BUTTON_B pressed → exits with code 3 (app-exit). On the simulated board, press a button by
// writing {"gpio":{"BUTTON_A":1}} to DEVICE_STATE/peripherals/sim-inputs.json.
import { gpio } from '@heptad/sdk';

function crashNow(): never {
  throw new Error('crash requested with BUTTON_A');
}

console.log('crasher: running; press BUTTON_A to crash, BUTTON_B to exit');
setInterval(async () => {
  if ((await gpio.read('BUTTON_A')) === 1) crashNow();
  if ((await gpio.read('BUTTON_B')) === 1) {
    console.log('crasher: exiting with code 3');
    process.exit(3);
  }
}, 100);
