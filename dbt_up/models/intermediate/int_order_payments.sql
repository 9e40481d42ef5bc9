with

payments as (

    select * from {{ ref('stg_payments') }}

),

aggregated as (

    select
        order_id,
        count(*) as payment_count,
        sum(case when not is_refund then amount else 0 end) as gross_amount,
        -sum(case when is_refund then amount else 0 end) as refunded_amount,
        sum(amount) as net_amount,
        {{ dbt.bool_or('is_refund') }} as has_refund

    from payments

    group by order_id

),

final as (

    select * from aggregated

)

select * from final
