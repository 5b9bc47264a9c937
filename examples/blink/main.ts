// blink: toggles LED1 every N ms (CmdArgs[0], default 500). The only thing its manifest grants.
import { gpio } from '@heptad/sdk';

const period = Number(process.argv[2] ?? 500);
let on = false;
setInterval(() => {
  on = !on;
  gpio.write('LED1', on).catch((e: { code?: string }) => console.error(`blink: ${e.code ?? e}`));
}, period);
console.log(`blink: toggling LED1 every ${period} ms`);
