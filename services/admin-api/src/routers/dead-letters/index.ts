import { router } from '../../trpc/init';
import { list } from './list';
import { retry } from './retry';

export const deadLettersRouter = router({ list, retry });
